// vmm/boot/elf_pvh.h — ELF32 and ELF64 kernels with a Xen PVH entry note (vmlinux, our test guest).
//
// Owns: parsing and validating the ELF header, program headers and the XEN_ELFNOTE_PHYS32_ENTRY
// note (every offset and size checked against the file), checking the segments' placement in
// guest RAM, and copying them in. The start_info the entry point reads is pvh_start_info.h's job.
// Must not know: KVM, boot_params.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "vmm/memory.h"

namespace minihv::boot {

constexpr uint32_t kXenElfNotePhys32Entry = 18;

struct ElfLoadSegment {
  uint64_t offset = 0;  // in the file
  uint64_t filesz = 0;
  uint64_t paddr = 0;   // guest-physical load address
  uint64_t memsz = 0;   // >= filesz; the rest is zeroed
};

struct PvhImage {
  uint32_t entry = 0;  // 32-bit physical entry from the PVH note
  std::vector<ElfLoadSegment> segments;
  uint64_t lowest = 0;   // lowest paddr of any segment
  uint64_t highest = 0;  // end of the highest segment
};

// True when the file starts with the ELF magic (then it must be a valid PVH ELF or an error).
bool looks_like_elf(std::span<const uint8_t> file);
// Validates the file as an x86 ELF32 or ELF64 executable with a PVH entry note.
Result<PvhImage> parse_pvh_elf(std::span<const uint8_t> file);
// Every segment must lie in RAM at or above 1 MiB (below is the boot data area), outside the MMIO
// gap, and the entry must be inside a segment.
Status check_pvh_placement(const PvhImage& image, const GuestMemory& mem);
Status load_pvh_segments(GuestMemory& mem, std::span<const uint8_t> file, const PvhImage& image);

}  // namespace minihv::boot
