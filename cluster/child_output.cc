#include "cluster/child_output.h"

#include <cctype>
#include <charconv>

namespace minihv::cluster {

namespace {

// A decimal number in `s` after `key` ("errs="), or -1; never throws whatever the guest prints.
long field(std::string_view s, std::string_view key) {
  const size_t at = s.find(key);
  if (at == std::string_view::npos) return -1;
  long v = -1;
  const char* b = s.data() + at + key.size();
  auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
  return ec == std::errc() && p != b ? v : -1;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

constexpr std::string_view kListening = "waiting for a migrating VM on ";
constexpr std::string_view kArrived = "incoming migration complete";
constexpr std::string_view kError = "minihv: error: ";

}  // namespace

ConsoleFact parse_console_line(std::string_view line) {
  ConsoleFact f;
  if (starts_with(line, "HB cpu=")) {
    f.kind = ConsoleFact::kHeartbeat;
    f.errs = field(line, " errs=");
    f.rec = field(line, " rec=");
  } else if (starts_with(line, "CORRUPT")) {
    f.kind = ConsoleFact::kCorrupt;
  } else if (starts_with(line, "DISK resume last=")) {
    f.kind = ConsoleFact::kResume;
    f.resume = field(line, "last=");
  }
  return f;
}

LogFact parse_log_line(std::string_view line) {
  if (const size_t at = line.find(kListening); at != std::string_view::npos) {
    std::string_view rest = line.substr(at + kListening.size());
    size_t n = 0;
    while (n < rest.size() && !std::isspace(static_cast<unsigned char>(rest[n]))) ++n;
    if (n > 0) return {LogFact::kListening, std::string(rest.substr(0, n))};
  }
  if (starts_with(line, kError)) return {LogFact::kError, std::string(line.substr(kError.size(), kMaxErrorText))};
  if (line.find(kArrived) != std::string_view::npos) return {LogFact::kArrived, {}};
  return {};
}

std::vector<std::string> LineSplitter::feed(std::string_view data) {
  std::vector<std::string> lines;
  partial_.append(data);
  size_t start = 0, nl;
  while ((nl = partial_.find('\n', start)) != std::string::npos) {
    lines.push_back(partial_.substr(start, std::min(nl - start, max_)));
    start = nl + 1;
  }
  partial_.erase(0, start);
  if (partial_.size() > max_) partial_.clear();
  return lines;
}

}  // namespace minihv::cluster
