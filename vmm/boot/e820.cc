#include "vmm/boot/e820.h"

#include <algorithm>

#include "vmm/layout.h"

namespace minihv::boot {

std::vector<E820Entry> build_e820(std::span<const MemoryRegion> regions) {
  std::vector<E820Entry> map;
  for (const MemoryRegion& r : regions) {
    const uint64_t end = r.gpa + r.size;
    if (r.gpa < layout::kEbdaStart) {
      map.push_back({r.gpa, std::min(end, layout::kEbdaStart) - r.gpa, E820Type::kRam});
    }
    if (r.gpa < layout::kHighMem && end > layout::kEbdaStart) {
      const uint64_t lo = std::max(r.gpa, layout::kEbdaStart);
      map.push_back({lo, std::min(end, layout::kHighMem) - lo, E820Type::kReserved});
    }
    if (end > layout::kHighMem) {
      const uint64_t lo = std::max(r.gpa, layout::kHighMem);
      map.push_back({lo, end - lo, E820Type::kRam});
    }
  }
  return map;
}

}  // namespace minihv::boot
