#include "vmm/boot/initrd.h"

#include <string>

#include "vmm/layout.h"

namespace minihv::boot {

uint64_t low_ram_end(const GuestMemory& mem) {
  for (const MemoryRegion& r : mem.regions())
    if (r.gpa == 0) return r.size;
  return 0;
}

Result<uint64_t> place_initrd(uint64_t size, uint64_t floor, uint64_t limit) {
  const auto mib = [](uint64_t v) { return std::to_string((v + layout::kMiB - 1) / layout::kMiB) + " MiB"; };
  if (size == 0) return Status::error("initrd is empty");
  if (size > limit || ((limit - size) & ~(layout::kInitrdAlign - 1)) < floor)
    return Status::error("initrd of " + mib(size) + " does not fit between the kernel's end (" + mib(floor) +
                         ") and " + mib(limit) + ": give the guest more memory");
  return (limit - size) & ~(layout::kInitrdAlign - 1);
}

Status write_initrd(GuestMemory& mem, uint64_t addr, std::span<const uint8_t> initrd) {
  return mem.write(addr, initrd.data(), initrd.size()).context("writing the initrd");
}

}  // namespace minihv::boot
