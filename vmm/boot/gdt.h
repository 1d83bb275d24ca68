// vmm/boot/gdt.h — the boot GDT: its descriptors, their selectors, and the kvm_segment each implies.
//
// Owns: encoding 8-byte segment descriptors and decoding them into struct kvm_segment, so the GDT
// written into guest memory and the hidden segment state given to KVM can never disagree.
// Both boot modes share one table (layout::kGdtAddr):
//   0x00 null · 0x08 flat 32-bit code (PVH) · 0x10 64-bit code (__BOOT_CS) · 0x18 flat data
//   (__BOOT_DS) · 0x20 TSS (base 0, limit 0x67; 16-byte slot so it is also a valid 64-bit TSS)
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstddef>
#include <cstdint>

namespace minihv::boot {

// Access byte: P | DPL | S | type.  Flags nibble: G | D/B | L | AVL.
constexpr uint8_t kAccessCode = 0x9B;     // present, ring 0, code, execute/read, accessed
constexpr uint8_t kAccessData = 0x93;     // present, ring 0, data, read/write, accessed
constexpr uint8_t kAccessTssBusy = 0x8B;  // present, system, 32/64-bit busy TSS
constexpr uint8_t kFlagsCode32 = 0xC;     // 4 KiB granularity, 32-bit default operand size
constexpr uint8_t kFlagsCode64 = 0xA;     // 4 KiB granularity, long mode
constexpr uint8_t kFlagsData = 0xC;
constexpr uint8_t kFlagsTss = 0x0;        // byte granularity
constexpr uint32_t kFlatLimit = 0xFFFFF;  // with G=1: 4 GiB
constexpr uint32_t kTssLimit = 0x67;      // the minimal 104-byte TSS the PVH ABI asks for

constexpr uint16_t kSelCode32 = 0x08;
constexpr uint16_t kSelCode64 = 0x10;     // Linux's __BOOT_CS
constexpr uint16_t kSelData = 0x18;       // Linux's __BOOT_DS
constexpr uint16_t kSelTss = 0x20;

constexpr uint64_t gdt_entry(uint8_t flags, uint8_t access, uint32_t base, uint32_t limit) {
  return (uint64_t{base & 0xFF000000u} << 32) | (uint64_t{flags & 0xFu} << 52) |
         (uint64_t{limit & 0xF0000u} << 32) | (uint64_t{access} << 40) |
         (uint64_t{base & 0x00FFFFFFu} << 16) | uint64_t{limit & 0xFFFFu};
}

constexpr size_t kGdtEntries = 6;
using Gdt = std::array<uint64_t, kGdtEntries>;

constexpr Gdt boot_gdt() {
  return {0,
          gdt_entry(kFlagsCode32, kAccessCode, 0, kFlatLimit),
          gdt_entry(kFlagsCode64, kAccessCode, 0, kFlatLimit),
          gdt_entry(kFlagsData, kAccessData, 0, kFlatLimit),
          gdt_entry(kFlagsTss, kAccessTssBusy, 0, kTssLimit),
          0};  // upper half of the 16-byte TSS descriptor (base[63:32] = 0)
}

// The hidden segment state KVM needs for `selector`, decoded from its descriptor.
kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector);

}  // namespace minihv::boot
