#include "cluster/child_output.h"

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

std::vector<std::string> LineSplitter::feed(std::string_view data) {
  std::vector<std::string> lines;
  for (;;) {
    const size_t nl = data.find('\n');
    const std::string_view piece = data.substr(0, nl);
    if (partial_.size() < max_) partial_.append(piece.substr(0, max_ - partial_.size()));
    if (nl == std::string_view::npos) return lines;
    lines.push_back(std::move(partial_));
    partial_.clear();
    data.remove_prefix(nl + 1);
  }
}

}  // namespace minihv::cluster
