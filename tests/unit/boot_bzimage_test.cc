// The bzImage loader against the real Debian cloud kernel that scripts/guest-kit fetches.
#include "vmm/boot/bzimage.h"
#include "vmm/boot/vmlinux.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <filesystem>

#include "boot_test_files.h"
#include "vmm/boot/bytes.h"
#include "vmm/boot/cpu_setup.h"
#include "vmm/boot/loader.h"
#include "vmm/layout.h"

namespace minihv::boot {
namespace {

using layout::kMiB;
using testing::read_all;
using testing::TempFile;

const std::string kKitDir = std::string(MINIHV_SOURCE_DIR) + "/guest-kit";
const std::string kKernel = kKitDir + "/vmlinuz";
const std::string kInitrd = kKitDir + "/initrd.cpio.gz";

class BootBzImage : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kKernel))
        << kKernel << " is missing: run scripts/guest-kit (it fetches Debian's cloud kernel)";
    kernel_ = read_all(kKernel);
    ASSERT_GT(kernel_.size(), 1u * kMiB);
  }
  Result<BootPlan> load(GuestMemory& mem, const std::string& kernel, const std::string& initrd,
                        const std::string& cmdline = "console=ttyS0 panic=-1") {
    BootConfig cfg;
    cfg.kernel_path = kernel;
    cfg.initrd_path = initrd;
    cfg.cmdline = cmdline;
    cfg.num_cpus = 2;
    cfg.virtio_devices = {{layout::kVirtioMmioBase, layout::kVirtioMmioSize, layout::kVirtioIrqBase}};
    return load_kernel(mem, cfg);
  }
  template <typename T>
  T field(size_t off) const { return *read_le<T>(kernel_, off); }

  std::vector<uint8_t> kernel_;
};

#define BP_OFF(f) offsetof(boot_params, f)

TEST_F(BootBzImage, ParsesTheDebianHeader) {
  auto img = parse_bzimage(kernel_);
  ASSERT_TRUE(img) << img.message();
  EXPECT_GE(img->protocol, 0x020C);
  EXPECT_EQ(img->protocol, field<uint16_t>(BP_OFF(hdr.version)));
  const uint8_t setup_sects = kernel_[BP_OFF(hdr.setup_sects)];
  EXPECT_NE(setup_sects, 0);
  EXPECT_EQ(img->setup_sects, setup_sects);
  EXPECT_EQ(img->payload_offset, (setup_sects + 1u) * 512u);
  EXPECT_EQ(img->payload_size, kernel_.size() - img->payload_offset);
  EXPECT_TRUE(field<uint16_t>(BP_OFF(hdr.xloadflags)) & XLF_KERNEL_64);
  // Debian's kernel is relocatable: it goes to its preferred address (16 MiB on x86-64).
  ASSERT_NE(kernel_[BP_OFF(hdr.relocatable_kernel)], 0);
  EXPECT_EQ(img->load_addr, field<uint64_t>(BP_OFF(hdr.pref_address)));
  EXPECT_EQ(img->load_addr % field<uint32_t>(BP_OFF(hdr.kernel_alignment)), 0u);
  EXPECT_EQ(img->run_end, img->load_addr + field<uint32_t>(BP_OFF(hdr.init_size)));
  EXPECT_EQ(img->cmdline_size, field<uint32_t>(BP_OFF(hdr.cmdline_size)));
}

TEST_F(BootBzImage, LoadsKernelZeroPageAndInitrd) {
  ASSERT_TRUE(std::filesystem::exists(kInitrd)) << kInitrd << " is missing: run scripts/guest-kit";
  auto mem = GuestMemory::create(256 * kMiB);
  ASSERT_TRUE(mem) << mem.message();
  auto plan = load(**mem, kKernel, kInitrd);
  ASSERT_TRUE(plan) << plan.message();
  const auto img = *parse_bzimage(kernel_);

  EXPECT_EQ(plan->mode, BootMode::kLinux64);
  // Debian's payload is LZ4: minihv unpacks it and enters the vmlinux at startup_64 (vmlinux.h).
  auto elf = unpack_bzimage_payload(kernel_, img);
  ASSERT_TRUE(elf && elf->has_value());
  auto v = parse_vmlinux(**elf);
  ASSERT_TRUE(v);
  EXPECT_EQ(plan->entry, v->entry);
  EXPECT_EQ(plan->boot_info, layout::kZeroPage);
  EXPECT_EQ(boot_regs(*plan).rsi, layout::kZeroPage);
  EXPECT_EQ(boot_sregs(*plan, kvm_sregs{}).cs.selector, 0x10);

  std::vector<uint8_t> head(4096);
  const auto& seg = v->segments.front();
  ASSERT_TRUE((*mem)->read(seg.paddr, head.data(), head.size()).is_ok());
  EXPECT_TRUE(std::equal(head.begin(), head.end(), (*elf)->begin() + static_cast<long>(seg.offset)));
  EXPECT_GE(plan->initrd_addr, v->highest) << "the initrd must not overlap the unpacked kernel";

  const boot_params bp = *(*mem)->read_obj<boot_params>(layout::kZeroPage);
  EXPECT_EQ(bp.hdr.boot_flag, 0xAA55);
  EXPECT_EQ(bp.hdr.header, 0x53726448u);
  EXPECT_EQ(bp.hdr.version, img.protocol);
  EXPECT_EQ(bp.hdr.setup_sects, img.setup_sects);
  EXPECT_EQ(bp.hdr.type_of_loader, 0xFF);
  EXPECT_TRUE(bp.hdr.loadflags & LOADED_HIGH);
  EXPECT_TRUE(bp.hdr.loadflags & CAN_USE_HEAP);
  EXPECT_FALSE(bp.hdr.loadflags & KEEP_SEGMENTS);
  EXPECT_EQ(bp.hdr.cmd_line_ptr, layout::kCmdline);
  EXPECT_EQ(bp.hdr.code32_start, img.load_addr);
  EXPECT_EQ(bp.acpi_rsdp_addr, layout::kAcpiStart);

  const auto initrd_size = std::filesystem::file_size(kInitrd);
  EXPECT_EQ(bp.hdr.ramdisk_size, initrd_size);
  EXPECT_EQ(bp.hdr.ramdisk_image, plan->initrd_addr);
  EXPECT_EQ(bp.hdr.ramdisk_image % layout::kInitrdAlign, 0u);
  EXPECT_GE(bp.hdr.ramdisk_image, img.run_end);
  EXPECT_LE(bp.hdr.ramdisk_image + initrd_size, std::min<uint64_t>(256 * kMiB, bp.hdr.initrd_addr_max + 1ull));
  uint8_t gz[2];
  ASSERT_TRUE((*mem)->read(bp.hdr.ramdisk_image, gz, 2).is_ok());
  EXPECT_EQ(gz[0], 0x1F);  // gzip magic
  EXPECT_EQ(gz[1], 0x8B);

  ASSERT_EQ(bp.e820_entries, 3);
  EXPECT_EQ(bp.e820_table[0].addr, 0u);
  EXPECT_EQ(bp.e820_table[0].size, layout::kEbdaStart);
  EXPECT_EQ(bp.e820_table[0].type, 1u);
  EXPECT_EQ(bp.e820_table[1].addr, layout::kEbdaStart);
  EXPECT_EQ(bp.e820_table[1].type, 2u);
  EXPECT_EQ(bp.e820_table[2].addr, layout::kHighMem);
  EXPECT_EQ(bp.e820_table[2].addr + bp.e820_table[2].size, 256 * kMiB);
  EXPECT_EQ(bp.e820_table[2].type, 1u);

  char cmdline[32] = {};
  ASSERT_TRUE((*mem)->read(layout::kCmdline, cmdline, 23).is_ok());
  EXPECT_STREQ(cmdline, "console=ttyS0 panic=-1");
  EXPECT_EQ(*(*mem)->read_obj<uint64_t>(layout::kPml4), layout::kPdpt | 0x3);
  EXPECT_EQ(*(*mem)->read_obj<uint64_t>(layout::kGdtAddr + 0x18), 0x00CF93000000FFFFull);
}

TEST_F(BootBzImage, TooLittleMemorySaysHowMuch) {
  auto mem = GuestMemory::create(32 * kMiB);
  ASSERT_TRUE(mem) << mem.message();
  auto plan = load(**mem, kKernel, "");
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.message().find("give the guest more memory"), std::string::npos) << plan.message();
  EXPECT_NE(plan.message().find(kKernel), std::string::npos) << plan.message();
}

TEST_F(BootBzImage, CommandLineLongerThanTheKernelTakes) {
  auto mem = GuestMemory::create(128 * kMiB);
  ASSERT_TRUE(mem) << mem.message();
  const uint32_t max = field<uint32_t>(BP_OFF(hdr.cmdline_size));
  auto plan = load(**mem, kKernel, "", std::string(max + 1, 'x'));
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.message().find("command line"), std::string::npos) << plan.message();
  EXPECT_TRUE(load(**mem, kKernel, "", std::string(max, 'x')));
}

TEST_F(BootBzImage, RejectsOldProtocolNo64BitEntryAndBadSetupSects) {
  auto old = kernel_;
  old[BP_OFF(hdr.version)] = 0x0B;  // 2.11
  auto img = parse_bzimage(old);
  ASSERT_FALSE(img);
  EXPECT_NE(img.message().find("2.12"), std::string::npos) << img.message();

  auto no64 = kernel_;
  no64[BP_OFF(hdr.xloadflags)] &= static_cast<uint8_t>(~XLF_KERNEL_64);
  EXPECT_FALSE(parse_bzimage(no64));

  std::vector<uint8_t> cut(kernel_.begin(), kernel_.begin() + 4096);
  cut[BP_OFF(hdr.setup_sects)] = 40;  // setup would end at 20.5 KiB, past the 4 KiB file
  img = parse_bzimage(cut);
  ASSERT_FALSE(img);
  EXPECT_NE(img.message().find("setup_sects"), std::string::npos) << img.message();
}

TEST_F(BootBzImage, InitrdThatDoesNotFit) {
  auto mem = GuestMemory::create(80 * kMiB);
  ASSERT_TRUE(mem) << mem.message();
  TempFile big(std::vector<uint8_t>(40 * kMiB, 1));
  auto plan = load(**mem, kKernel, big.path());
  ASSERT_FALSE(plan);
  EXPECT_NE(plan.message().find("initrd"), std::string::npos) << plan.message();
}

}  // namespace
}  // namespace minihv::boot
