#include "common/units.h"

#include <cctype>
#include <cstdio>

namespace minihv {

namespace {

constexpr size_t kMaxFractionDigits = 9;  // "1.000000001G" is the finest a size needs

struct SizeUnit {
  const char* name;
  uint64_t bytes;
};
constexpr SizeUnit kSizeUnits[] = {
    {"B", 1}, {"K", 1ull << 10}, {"KB", 1ull << 10}, {"KIB", 1ull << 10},
    {"M", 1ull << 20}, {"MB", 1ull << 20}, {"MIB", 1ull << 20},
    {"G", 1ull << 30}, {"GB", 1ull << 30}, {"GIB", 1ull << 30},
    {"T", 1ull << 40}, {"TB", 1ull << 40}, {"TIB", 1ull << 40}};

bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }

}  // namespace

Result<uint64_t> parse_size(const std::string& text, uint64_t bare_unit) {
  const Status junk = Status::invalid("'" + text + "' is not a size (examples: 512M, 1.5G, 4096)");
  const Status too_large = Status::invalid("size '" + text + "' is too large");
  size_t i = 0;
  unsigned __int128 whole = 0;
  if (text.empty() || !is_digit(text[0])) return junk;
  for (; i < text.size() && is_digit(text[i]); ++i) {
    whole = whole * 10 + static_cast<unsigned>(text[i] - '0');
    if (whole > UINT64_MAX) return too_large;
  }
  uint64_t frac = 0, frac_scale = 1;  // the digits after a '.', as frac / frac_scale
  if (i < text.size() && text[i] == '.') {
    if (++i == text.size() || !is_digit(text[i])) return junk;
    for (; i < text.size() && is_digit(text[i]); ++i) {
      if (frac_scale == 1'000'000'000) return Status::invalid("size '" + text + "' has more than " +
                                                               std::to_string(kMaxFractionDigits) + " decimals");
      frac = frac * 10 + static_cast<unsigned>(text[i] - '0');
      frac_scale *= 10;
    }
  }
  std::string suffix;
  for (; i < text.size(); ++i) suffix += static_cast<char>(std::toupper(static_cast<unsigned char>(text[i])));
  uint64_t unit = bare_unit;
  if (!suffix.empty()) {
    const SizeUnit* found = nullptr;
    for (const auto& u : kSizeUnits)
      if (suffix == u.name) found = &u;
    if (!found) return Status::invalid("size '" + text + "' has an unknown unit (use K, M, G or T)");
    unit = found->bytes;
  }
  const unsigned __int128 frac_bytes = static_cast<unsigned __int128>(frac) * unit;
  if (frac_bytes % frac_scale != 0)
    return Status::invalid("size '" + text + "' is not a whole number of bytes");
  const unsigned __int128 total = whole * unit + frac_bytes / frac_scale;
  if (total > UINT64_MAX) return too_large;
  return static_cast<uint64_t>(total);
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
