// vmm/boot/e820.h — the guest's physical memory map, as both boot paths report it.
//
// Owns: turning the RAM regions into e820 entries (usable RAM, the reserved EBDA/BIOS hole below
// 1 MiB). The bzImage zero page and the PVH memmap are both filled from build_e820().
// Must not know: KVM, kernels.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "vmm/memory.h"

namespace minihv::boot {

enum class E820Type : uint32_t { kRam = 1, kReserved = 2, kAcpi = 3, kNvs = 4, kUnusable = 5 };

struct E820Entry {
  uint64_t addr = 0;
  uint64_t size = 0;
  E820Type type = E820Type::kRam;
  bool operator==(const E820Entry&) const = default;
};

// RAM [0, kEbdaStart) usable, [kEbdaStart, 1 MiB) reserved (EBDA, ACPI tables, MP table),
// then every RAM byte from 1 MiB up usable, one entry per region (the MMIO gap splits them).
std::vector<E820Entry> build_e820(std::span<const MemoryRegion> regions);

}  // namespace minihv::boot
