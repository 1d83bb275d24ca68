// Unpacking the real Debian kernel's payload in the VMM (vmm/boot/vmlinux.h).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "tests/unit/boot_test_files.h"
#include "vmm/boot/bzimage.h"
#include "vmm/boot/vmlinux.h"

namespace minihv::boot {
namespace {

const std::string kKernel = std::string(MINIHV_SOURCE_DIR) + "/guest-kit/vmlinuz";

class Vmlinux : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(kKernel)) << kKernel << " is missing: run scripts/guest-kit";
    file_ = testing::read_all(kKernel);
    auto img = parse_bzimage(file_);
    ASSERT_TRUE(img) << img.message();
    img_ = *img;
  }
  std::vector<uint8_t> file_;
  BzImage img_;
};

TEST_F(Vmlinux, DebianPayloadUnpacksToAnX86ElfAtItsLinkAddress) {
  auto elf = unpack_bzimage_payload(file_, img_);
  ASSERT_TRUE(elf) << elf.message();
  ASSERT_TRUE(elf->has_value()) << "Debian's cloud kernel is LZ4-compressed; minihv must unpack it";
  EXPECT_GT((*elf)->size(), file_.size()) << "decompressed is larger than compressed";
  auto v = parse_vmlinux(**elf);
  ASSERT_TRUE(v) << v.message();
  EXPECT_EQ(v->entry, 0x1000000u) << "startup_64 at LOAD_PHYSICAL_ADDR (16 MiB)";
  EXPECT_EQ(v->lowest, 0x1000000u);
  EXPECT_GT(v->highest, v->lowest + (16u << 20));
  auto mem = GuestMemory::create(256u << 20);
  ASSERT_TRUE(mem);
  ASSERT_TRUE(load_vmlinux(**mem, **elf, *v).is_ok());
  // The first instructions of startup_64 are in guest memory where the ELF says.
  const auto& seg = v->segments.front();
  EXPECT_EQ(std::memcmp((*mem)->host_ptr(seg.paddr, 64), (*elf)->data() + seg.offset, 64), 0);
}

TEST_F(Vmlinux, CorruptPayloadIsAnErrorNotACrash) {
  uint32_t rel = 0;
  std::memcpy(&rel, file_.data() + 0x248, sizeof rel);  // setup_header.payload_offset
  const uint64_t off = img_.payload_offset + rel;
  // The first block's compressed size (right after the magic) pointing past the payload.
  std::vector<uint8_t> bad = file_;
  bad[off + 7] = 0x7f;
  auto elf = unpack_bzimage_payload(bad, img_);
  ASSERT_FALSE(elf) << "a block larger than the payload must be refused";
  EXPECT_NE(elf.message().find("LZ4"), std::string::npos) << elf.message();
  // A block cut short: the decoder must stop inside the buffer and say so.
  std::vector<uint8_t> garbage = file_;
  for (uint64_t i = off + 8; i < off + 4096; ++i) garbage[i] = 0xff;
  EXPECT_FALSE(unpack_bzimage_payload(garbage, img_)) << "a garbage block must be refused";
  std::vector<uint8_t> cut(file_.begin(), file_.begin() + static_cast<long>(off + 5000));
  EXPECT_FALSE(unpack_bzimage_payload(cut, img_)) << "a truncated payload must be refused";
}

TEST(VmlinuxElf, RejectsJunk) {
  std::vector<uint8_t> junk(4096, 0x41);
  EXPECT_FALSE(parse_vmlinux(junk));
  EXPECT_FALSE(parse_vmlinux(std::span<const uint8_t>()));
}

}  // namespace
}  // namespace minihv::boot
