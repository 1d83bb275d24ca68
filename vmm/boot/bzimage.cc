#include "vmm/boot/bzimage.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>

#include "vmm/boot/bytes.h"
#include "vmm/layout.h"

namespace minihv::boot {

namespace {

constexpr size_t kHdrOffset = offsetof(boot_params, hdr);  // 0x1F1
constexpr size_t kHdrMaxEnd = kHdrOffset + sizeof(setup_header);
constexpr size_t kJumpLenOffset = 0x201;                   // header end = 0x202 + this byte
constexpr size_t kJumpBase = 0x202;

template <typename T>
T hdr_field(std::span<const uint8_t> file, size_t offset_in_boot_params) {
  return read_le<T>(file, offset_in_boot_params).value_or(0);
}
#define HDR(field) hdr_field<decltype(setup_header::field)>(file, offsetof(boot_params, hdr.field))

std::string hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string protocol_str(uint16_t v) { return std::to_string(v >> 8) + "." + std::to_string(v & 0xFF); }

}  // namespace

bool looks_like_bzimage(std::span<const uint8_t> file) {
  return file.size() >= kHdrMaxEnd && HDR(boot_flag) == kBootFlagMagic && HDR(header) == kHdrSMagic;
}

Result<BzImage> parse_bzimage(std::span<const uint8_t> file) {
  if (!looks_like_bzimage(file)) return Status::error("no Linux setup header (0xAA55 + \"HdrS\")");
  BzImage img;
  img.protocol = HDR(version);
  if (img.protocol < kMinBootProtocol)
    return Status::error("boot protocol " + protocol_str(img.protocol) + " is older than 2.12 (no 64-bit entry)");
  if (!(HDR(xloadflags) & XLF_KERNEL_64)) return Status::error("kernel has no 64-bit entry point (XLF_KERNEL_64)");
  if (!(HDR(loadflags) & LOADED_HIGH)) return Status::error("not a bzImage: the kernel wants to load below 1 MiB");

  img.setup_sects = HDR(setup_sects) ? HDR(setup_sects) : kDefaultSetupSects;
  img.payload_offset = (uint64_t{img.setup_sects} + 1) * kSectorSize;
  if (img.payload_offset >= file.size())
    return Status::error("setup_sects " + std::to_string(img.setup_sects) + " points past the end of the file");
  img.payload_size = file.size() - img.payload_offset;
  img.header_end = std::min<size_t>(kJumpBase + file[kJumpLenOffset], kHdrMaxEnd);
  if (img.header_end > img.payload_offset) return Status::error("setup header is longer than the setup code");

  const uint32_t align = HDR(kernel_alignment);
  const bool relocatable = HDR(relocatable_kernel) != 0;
  if (relocatable && (align == 0 || (align & (align - 1))))
    return Status::error("kernel_alignment " + hex(align) + " is not a power of two");
  const uint64_t pref = HDR(pref_address);
  const uint64_t code32 = HDR(code32_start);
  // A relocatable kernel runs where it is put, at least at pref_address (its LOAD_PHYSICAL_ADDR);
  // putting it there spares the decompressor a copy. A fixed one moves itself to pref_address.
  img.load_addr = relocatable ? (pref + align - 1) / align * align : code32;
  if (img.load_addr < layout::kHighMem)
    return Status::error("kernel load address " + hex(img.load_addr) + " is below 1 MiB");
  img.init_size = std::max<uint64_t>(HDR(init_size), img.payload_size);
  img.run_end = std::max(img.load_addr, pref) + img.init_size;
  img.cmdline_size = HDR(cmdline_size);
  img.initrd_addr_max = HDR(initrd_addr_max) ? HDR(initrd_addr_max) : kDefaultInitrdAddrMax;
  return img;
}

Status check_bzimage_placement(const BzImage& image, const GuestMemory& mem) {
  const uint64_t start = image.load_addr;
  if (!mem.contains(start, image.run_end - start)) {
    const uint64_t need_mib = (image.run_end + layout::kMiB - 1) / layout::kMiB;
    return Status::error("kernel needs RAM up to " + hex(image.run_end) + " (" + std::to_string(need_mib) +
                         " MiB) to decompress itself: give the guest more memory");
  }
  return Status::ok();
}

Status load_bzimage_kernel(GuestMemory& mem, std::span<const uint8_t> file, const BzImage& image) {
  return mem.write(image.load_addr, file.data() + image.payload_offset, image.payload_size)
      .context("copying the protected-mode kernel");
}

boot_params build_zero_page(std::span<const uint8_t> file, const BzImage& image, const ZeroPageInputs& in,
                            std::span<const E820Entry> e820) {
  boot_params bp;
  std::memset(&bp, 0, sizeof bp);
  std::memcpy(reinterpret_cast<uint8_t*>(&bp) + kHdrOffset, file.data() + kHdrOffset, image.header_end - kHdrOffset);
  bp.hdr.type_of_loader = kLoaderTypeUndefined;
  bp.hdr.loadflags = static_cast<uint8_t>((bp.hdr.loadflags | CAN_USE_HEAP) & ~KEEP_SEGMENTS);
  bp.hdr.heap_end_ptr = kSetupHeapEnd;
  bp.hdr.code32_start = static_cast<uint32_t>(image.load_addr);
  bp.hdr.cmd_line_ptr = static_cast<uint32_t>(in.cmdline_paddr);
  bp.ext_cmd_line_ptr = static_cast<uint32_t>(in.cmdline_paddr >> 32);
  bp.hdr.ramdisk_image = static_cast<uint32_t>(in.initrd_paddr);
  bp.hdr.ramdisk_size = static_cast<uint32_t>(in.initrd_size);
  bp.ext_ramdisk_image = static_cast<uint32_t>(in.initrd_paddr >> 32);
  bp.ext_ramdisk_size = static_cast<uint32_t>(in.initrd_size >> 32);
  if (image.protocol >= kAcpiRsdpProtocol) bp.acpi_rsdp_addr = in.rsdp_paddr;
  const size_t n = std::min<size_t>(e820.size(), E820_MAX_ENTRIES_ZEROPAGE);
  for (size_t i = 0; i < n; ++i) {
    bp.e820_table[i].addr = e820[i].addr;
    bp.e820_table[i].size = e820[i].size;
    bp.e820_table[i].type = static_cast<uint32_t>(e820[i].type);
  }
  bp.e820_entries = static_cast<uint8_t>(n);
  return bp;
}

}  // namespace minihv::boot
