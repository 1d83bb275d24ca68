// vmm/boot/initrd.h — where the initrd goes: as high as allowed, aligned, above the kernel.
#pragma once

#include <cstdint>
#include <span>

#include "common/status.h"
#include "vmm/memory.h"

namespace minihv::boot {

// End of the RAM region that starts at 0 (the top of RAM below the MMIO gap).
uint64_t low_ram_end(const GuestMemory& mem);

// The highest layout::kInitrdAlign-aligned address a `size`-byte initrd can start at so that it
// ends at or below `limit` and starts at or above `floor` (the kernel's end). Error when none.
Result<uint64_t> place_initrd(uint64_t size, uint64_t floor, uint64_t limit);

// Copies the initrd into guest memory at `addr`.
Status write_initrd(GuestMemory& mem, uint64_t addr, std::span<const uint8_t> initrd);

}  // namespace minihv::boot
