// vmm/boot/vmlinux.h — booting a bzImage without its own decompressor.
//
// A bzImage carries the real kernel (an ELF "vmlinux") compressed inside its protected-mode part
// (setup header payload_offset/payload_length). The kernel's decompressor runs in guest ring 0;
// on a software KVM such as PVM every ring-0 instruction is interpreted (~0.75 µs), so
// decompressing Debian's kernel takes minutes there. minihv unpacks the payload itself at native
// speed, loads the ELF segments at their physical addresses and enters startup_64 with the same
// zero page — the path Firecracker uses for a vmlinux. When the payload's compression is one
// minihv does not decode, the caller falls back to the kernel's own decompressor.
//
// Owns: finding and decompressing the payload (LZ4 legacy frames, what Debian's kernels use),
// parsing the vmlinux ELF and copying its segments. Must not know: KVM, the zero page's contents.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/status.h"
#include "vmm/boot/bzimage.h"
#include "vmm/memory.h"

namespace minihv::boot {

constexpr uint32_t kLz4LegacyMagic = 0x184C2102;
constexpr uint64_t kLz4LegacyBlock = 8ull << 20;       // each legacy block decodes to at most 8 MiB
constexpr uint64_t kMaxVmlinuxBytes = 512ull << 20;    // refuse anything claiming to be larger

// The decompressed vmlinux, or nullopt when the payload uses a compression minihv leaves to the
// kernel (gzip, xz, zstd, ...). A payload that claims LZ4 but is corrupt is an error.
Result<std::optional<std::vector<uint8_t>>> unpack_bzimage_payload(std::span<const uint8_t> file, const BzImage& img);

struct VmlinuxSegment {
  uint64_t paddr = 0, offset = 0, filesz = 0, memsz = 0;
};
struct Vmlinux {
  uint64_t entry = 0;  // physical address of startup_64
  uint64_t lowest = 0, highest = 0;
  std::vector<VmlinuxSegment> segments;
};
// An x86-64 ELF whose PT_LOAD segments lie inside the file and above 1 MiB.
Result<Vmlinux> parse_vmlinux(std::span<const uint8_t> elf);
// Copies the segments into RAM (bss is already zero in fresh guest memory, and zeroed explicitly).
Status load_vmlinux(GuestMemory& mem, std::span<const uint8_t> elf, const Vmlinux& v);

}  // namespace minihv::boot
