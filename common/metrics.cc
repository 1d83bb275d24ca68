#include "common/metrics.h"

#include <charconv>
#include <cmath>

namespace minihv::metrics {

namespace {

constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53: larger doubles skip integers

const char* type_name(Type t) {
  switch (t) {
    case Type::kCounter: return "counter";
    case Type::kGauge: return "gauge";
    case Type::kHistogram: return "histogram";
  }
  return "untyped";
}

// {a="x",b="y"} (nothing for no labels); `extra` is appended last (a histogram's le).
std::string render_labels(const Labels& labels, const std::pair<std::string, std::string>* extra = nullptr) {
  if (labels.empty() && !extra) return "";
  std::string out = "{";
  auto add = [&](const std::string& k, const std::string& v) {
    if (out.size() > 1) out += ',';
    out += k + "=\"" + escape_label_value(v) + "\"";
  };
  for (const auto& [k, v] : labels) add(k, v);
  if (extra) add(extra->first, extra->second);
  return out + "}";
}

void render_histogram(std::string& out, const std::string& name, const HistogramSample& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= h.bounds.size(); ++i) {
    cumulative += i < h.counts.size() ? h.counts[i] : 0;
    const std::pair<std::string, std::string> le{"le", i < h.bounds.size() ? format_value(h.bounds[i]) : "+Inf"};
    out += name + "_bucket" + render_labels(h.labels, &le) + " " + std::to_string(cumulative) + "\n";
  }
  out += name + "_sum" + render_labels(h.labels) + " " + format_value(h.sum) + "\n";
  out += name + "_count" + render_labels(h.labels) + " " + std::to_string(h.count) + "\n";
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::trunc(v) && std::fabs(v) <= kMaxExactInteger) return std::to_string(static_cast<long long>(v));
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);  // as Go's %g: 0.0005, 1e-05
  return std::string(buf, r.ptr);
}

std::string render_exposition(const std::vector<Family>& families) {
  std::string out;
  for (const Family& f : families) {
    out += "# HELP " + f.name + " " + escape_help(f.help) + "\n";
    out += "# TYPE " + f.name + " " + type_name(f.type) + "\n";
    for (const Sample& s : f.samples) out += f.name + render_labels(s.labels) + " " + format_value(s.value) + "\n";
    for (const HistogramSample& h : f.histograms) render_histogram(out, f.name, h);
  }
  return out;
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard lock(mu_);
  counts_[i]++;
  sum_ += v;
  count_++;
}

HistogramSample Histogram::snapshot(Labels labels) const {
  std::lock_guard lock(mu_);
  return {std::move(labels), bounds_, counts_, sum_, count_};
}

}  // namespace minihv::metrics
