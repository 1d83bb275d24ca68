// vmm/boot/bzimage.h — bzImage kernels started through the Linux 64-bit boot protocol.
//
// Owns: parsing and validating the setup header (Documentation/arch/x86/boot.rst), deciding where
// the protected-mode kernel goes, copying it in, and filling the zero page (struct boot_params):
// the header copied from the file, loader type, flags, command line, initrd, e820, RSDP.
// Must not know: KVM (the entry state is cpu_setup.h's), ACPI contents.
#pragma once

#include <asm/bootparam.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "common/status.h"
#include "vmm/boot/e820.h"
#include "vmm/memory.h"

namespace minihv::boot {

constexpr uint16_t kBootFlagMagic = 0xAA55;
constexpr uint32_t kHdrSMagic = 0x53726448;        // "HdrS"
constexpr uint16_t kMinBootProtocol = 0x020C;      // 2.12: xloadflags / XLF_KERNEL_64
constexpr uint16_t kAcpiRsdpProtocol = 0x020E;     // 2.14: boot_params.acpi_rsdp_addr
constexpr uint8_t kDefaultSetupSects = 4;          // setup_sects == 0 means 4
constexpr uint64_t kSectorSize = 512;
constexpr uint64_t kEntry64Offset = 0x200;         // startup_64 = protected-mode kernel + 0x200
constexpr uint8_t kLoaderTypeUndefined = 0xFF;     // "no assigned loader id"
constexpr uint16_t kSetupHeapEnd = 0xFE00;         // for the 16-bit setup code; unused by 64-bit entry
constexpr uint32_t kDefaultInitrdAddrMax = 0x37FFFFFF;

struct BzImage {
  uint16_t protocol = 0;
  uint8_t setup_sects = 0;       // effective count (0 → 4)
  uint64_t payload_offset = 0;   // protected-mode kernel in the file
  uint64_t payload_size = 0;
  uint64_t load_addr = 0;        // where it is copied
  uint64_t init_size = 0;        // bytes the kernel needs from the address it runs at
  uint64_t run_end = 0;          // end of the memory the kernel uses while decompressing itself
  uint32_t cmdline_size = 0;     // longest command line, NUL excluded
  uint64_t initrd_addr_max = 0;  // highest byte an initrd may occupy
  size_t header_end = 0;         // file offset where the setup header ends
};

struct ZeroPageInputs {
  uint64_t cmdline_paddr = 0;
  uint64_t initrd_paddr = 0;     // 0: none
  uint64_t initrd_size = 0;
  uint64_t rsdp_paddr = 0;
};

// True when the boot sector magic and "HdrS" are present (then it must be a usable bzImage or an
// error).
bool looks_like_bzimage(std::span<const uint8_t> file);
Result<BzImage> parse_bzimage(std::span<const uint8_t> file);
// The kernel's decompression range [min(load, pref), run_end) must be RAM below the MMIO gap.
Status check_bzimage_placement(const BzImage& image, const GuestMemory& mem);
Status load_bzimage_kernel(GuestMemory& mem, std::span<const uint8_t> file, const BzImage& image);
// The zero page's bytes (pure: tests read them back).
boot_params build_zero_page(std::span<const uint8_t> file, const BzImage& image, const ZeroPageInputs& in,
                            std::span<const E820Entry> e820);

}  // namespace minihv::boot
