#include "migrate/verify.h"

#include <xxhash.h>

#include <algorithm>

namespace minihv::migrate {

std::vector<RangeDigest> digest_ram(std::span<const MemoryRegion> ram, uint64_t range_bytes) {
  std::vector<RangeDigest> out;
  for (const auto& r : ram)
    for (uint64_t off = 0; off < r.size; off += range_bytes) {
      uint64_t len = std::min(range_bytes, r.size - off);
      out.push_back({r.gpa + off, len, XXH3_64bits(r.host + off, len)});
    }
  return out;
}

Result<std::vector<RangeDigest>> compare_ram(std::span<const MemoryRegion> ram,
                                             std::span<const RangeDigest> expected) {
  std::vector<RangeDigest> mismatches;
  for (const auto& e : expected) {
    const MemoryRegion* in = nullptr;
    for (const auto& r : ram)
      if (e.gpa >= r.gpa && e.length <= r.size && e.gpa - r.gpa <= r.size - e.length) in = &r;
    if (!in)
      return Status::error("VERIFY range [" + std::to_string(e.gpa) + ", +" + std::to_string(e.length) +
                           ") is outside this VM's RAM (memory sizes differ?)");
    uint64_t local = XXH3_64bits(in->host + (e.gpa - in->gpa), e.length);
    if (local != e.digest) mismatches.push_back({e.gpa, e.length, local});
  }
  return mismatches;
}

}  // namespace minihv::migrate
