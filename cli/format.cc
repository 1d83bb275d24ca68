#include "cli/format.h"

#include <cstdio>

namespace minihv::cli {

std::string format_duration(uint64_t s) {
  constexpr uint64_t kMinute = 60, kHour = 60 * kMinute, kDay = 24 * kHour;
  char buf[48];
  const auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  if (s < kMinute)
    std::snprintf(buf, sizeof buf, "%llus", u(s));
  else if (s < kHour)
    std::snprintf(buf, sizeof buf, "%llum%02llus", u(s / kMinute), u(s % kMinute));
  else if (s < kDay)
    std::snprintf(buf, sizeof buf, "%lluh%02llum", u(s / kHour), u(s % kHour / kMinute));
  else
    std::snprintf(buf, sizeof buf, "%llud%02lluh", u(s / kDay), u(s % kDay / kHour));
  return buf;
}

}  // namespace minihv::cli
