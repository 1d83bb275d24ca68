#include "vmm/boot/gdt.h"

namespace minihv::boot {

kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector) {
  const auto access = static_cast<uint8_t>(entry >> 40);
  const auto flags = static_cast<uint8_t>((entry >> 52) & 0xF);
  const uint64_t base = ((entry >> 16) & 0xFFFFFF) | (((entry >> 56) & 0xFF) << 24);
  uint32_t limit = static_cast<uint32_t>((entry & 0xFFFF) | ((entry >> 32) & 0xF0000));
  const bool g = flags & 0x8;
  if (g) limit = (limit << 12) | 0xFFF;
  kvm_segment s{};
  s.base = base;
  s.limit = limit;
  s.selector = selector;
  s.type = access & 0xF;
  s.present = (access >> 7) & 1;
  s.dpl = (access >> 5) & 3;
  s.s = (access >> 4) & 1;
  s.avl = flags & 1;
  s.l = (flags >> 1) & 1;
  s.db = (flags >> 2) & 1;
  s.g = g;
  s.unusable = s.present ? 0 : 1;
  return s;
}

}  // namespace minihv::boot
