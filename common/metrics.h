// common/metrics.h — metrics in the Prometheus text exposition format 0.0.4.
//
// Owns: the metric values a process keeps (a thread-safe Histogram; counters are plain atomics) and
// rendering families of samples as exposition text (pure: render_exposition). It knows nothing of
// what is measured or of how the text is served (cluster/metrics_server.h).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace minihv::metrics {

// The content type of render_exposition's text.
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4";

using Labels = std::vector<std::pair<std::string, std::string>>;  // name → value, in order

enum class Type { kCounter, kGauge, kHistogram };

struct Sample {
  Labels labels;
  double value = 0;
};

// A histogram's state: `counts[i]` observations ≤ `bounds[i]` and > bounds[i-1] (not cumulative);
// counts has one more entry than bounds, for the observations above the last bound (+Inf).
struct HistogramSample {
  Labels labels;
  std::vector<double> bounds;
  std::vector<uint64_t> counts;
  double sum = 0;
  uint64_t count = 0;
};

struct Family {
  std::string name;  // minihv_*, with its unit (_seconds, _bytes, _total)
  std::string help;
  Type type = Type::kGauge;
  std::vector<Sample> samples;               // counters and gauges
  std::vector<HistogramSample> histograms;   // histograms
};

// Label values escape backslash, double quote and newline; HELP text backslash and newline.
std::string escape_label_value(std::string_view v);
std::string escape_help(std::string_view v);
// Integers without exponent or fraction, others shortest round-trip; +Inf, -Inf, NaN.
std::string format_value(double v);
// # HELP, # TYPE and the samples of every family, in order (histograms as _bucket{le=...}
// cumulative up to +Inf, _sum, _count).
std::string render_exposition(const std::vector<Family>& families);

// Observations into fixed buckets, safe from any thread.
class Histogram {
public:
  explicit Histogram(std::vector<double> bounds);  // ascending upper bounds, without +Inf
  void observe(double v);
  HistogramSample snapshot(Labels labels = {}) const;

private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
};

}  // namespace minihv::metrics
