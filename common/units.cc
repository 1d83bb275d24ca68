#include "common/units.h"

#include <cctype>
#include <cstdio>

namespace minihv {

Result<uint64_t> parse_size(const std::string& text, uint64_t bare_unit) {
  size_t i = 0;
  uint64_t n = 0;
  if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])))
    return Status::invalid("'" + text + "' is not a size (examples: 512M, 1G, 4096)");
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    const uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (n > (UINT64_MAX - d) / 10) return Status::invalid("size '" + text + "' is too large");
    n = n * 10 + d;
  }
  std::string suffix;
  for (; i < text.size(); ++i) suffix += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
  uint64_t unit = bare_unit;
  if (!suffix.empty()) {
    static const struct { const char* name; uint64_t unit; } kUnits[] = {
        {"B", 1}, {"K", 1ull << 10}, {"KB", 1ull << 10}, {"KIB", 1ull << 10},
        {"M", 1ull << 20}, {"MB", 1ull << 20}, {"MIB", 1ull << 20},
        {"G", 1ull << 30}, {"GB", 1ull << 30}, {"GIB", 1ull << 30},
        {"T", 1ull << 40}, {"TB", 1ull << 40}, {"TIB", 1ull << 40}};
    bool found = false;
    for (const auto& u : kUnits)
      if (suffix == u.name) {
        unit = u.unit;
        found = true;
      }
    if (!found) return Status::invalid("size '" + text + "' has an unknown unit (use K, M, G or T)");
  }
  if (n > UINT64_MAX / unit) return Status::invalid("size '" + text + "' is too large");
  return n * unit;
}

std::string format_size(uint64_t bytes) {
  static const char* kNames[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0 || v == static_cast<double>(static_cast<uint64_t>(v)))
    std::snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(v), kNames[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kNames[u]);
  return buf;
}

}  // namespace minihv
