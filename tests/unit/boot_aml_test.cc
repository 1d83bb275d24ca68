#include "vmm/boot/aml.h"

#include <gtest/gtest.h>

#include "vmm/boot/bytes.h"

namespace minihv::boot::aml {
namespace {

TEST(BootAml, PkgLengthOneByte) {
  EXPECT_EQ(pkg_length(0), Bytes({0x01}));
  EXPECT_EQ(pkg_length(62), Bytes({0x3F}));  // 63 in total: the largest 1-byte encoding
}

TEST(BootAml, PkgLengthTwoBytes) {
  // 63 bytes of content + 2 = 65 = 0x041: lead 0x40 | 0x1, then 0x04.
  EXPECT_EQ(pkg_length(63), Bytes({0x41, 0x04}));
  EXPECT_EQ(pkg_length(0xFFD), Bytes({0x4F, 0xFF}));  // 0xFFF in total
}

TEST(BootAml, PkgLengthThreeBytes) {
  // 0xFFE + 3 = 0x1001.
  EXPECT_EQ(pkg_length(0xFFE), Bytes({0x81, 0x00, 0x01}));
  EXPECT_EQ(pkg_length(0xFFFFC), Bytes({0x8F, 0xFF, 0xFF}));
}

TEST(BootAml, PkgLengthFourBytes) {
  // 0xFFFFD + 4 = 0x100001.
  EXPECT_EQ(pkg_length(0xFFFFD), Bytes({0xC1, 0x00, 0x00, 0x01}));
}

TEST(BootAml, NameStrings) {
  EXPECT_EQ(name_string("_HID"), Bytes({'_', 'H', 'I', 'D'}));
  EXPECT_EQ(name_string("\\_SB"), Bytes({'\\', '_', 'S', 'B', '_'}));
  EXPECT_EQ(name_string("\\_SB.COM1"), Bytes({'\\', 0x2E, '_', 'S', 'B', '_', 'C', 'O', 'M', '1'}));
  EXPECT_EQ(name_string("A.B.C"), Bytes({0x2F, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_'}));
}

TEST(BootAml, Integers) {
  EXPECT_EQ(integer(0), Bytes({0x00}));
  EXPECT_EQ(integer(1), Bytes({0x01}));
  EXPECT_EQ(integer(5), Bytes({0x0A, 5}));
  EXPECT_EQ(integer(0x1234), Bytes({0x0B, 0x34, 0x12}));
  EXPECT_EQ(integer(0xD0000000), Bytes({0x0C, 0, 0, 0, 0xD0}));
  EXPECT_EQ(integer(0x100000000), Bytes({0x0E, 0, 0, 0, 0, 1, 0, 0, 0}));
}

TEST(BootAml, StringAndEisaId) {
  EXPECT_EQ(string("AB"), Bytes({0x0D, 'A', 'B', 0}));
  EXPECT_EQ(eisa_id("PNP0501"), Bytes({0x0C, 0x41, 0xD0, 0x05, 0x01}));  // 0x0105D041
}

TEST(BootAml, NamePackageDevice) {
  const Bytes s5 = name("\\_S5", package({integer(5), integer(0), integer(0), integer(0)}));
  EXPECT_EQ(s5, Bytes({0x08, '\\', '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0A, 0x05, 0x00, 0x00, 0x00}));
  const Bytes dev = device("VR00", name("_UID", integer(0)));
  EXPECT_EQ(dev, Bytes({0x5B, 0x82, 0x0B, 'V', 'R', '0', '0', 0x08, '_', 'U', 'I', 'D', 0x00}));
}

TEST(BootAml, ResourceTemplateEndTagChecksum) {
  ResourceTemplate rt;
  rt.memory32_fixed(true, 0xD0000000, 0x1000).interrupt(Trigger::kEdge, Polarity::kActiveHigh, 5);
  const Bytes d = rt.descriptors_with_end_tag();
  const Bytes want_prefix{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x10, 0x00, 0x00,
                          0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00, 0x79};
  ASSERT_EQ(d.size(), want_prefix.size() + 1);
  EXPECT_TRUE(std::equal(want_prefix.begin(), want_prefix.end(), d.begin()));
  EXPECT_EQ(sum8(d), 0);
  const Bytes buf = rt.build();
  EXPECT_EQ(buf[0], 0x11);                    // BufferOp
  EXPECT_EQ(buf[1], d.size() + 3);            // PkgLength (1) + ByteConst size (2) + data
  EXPECT_EQ(buf[2], 0x0A);
  EXPECT_EQ(buf[3], d.size());
}

TEST(BootAml, LegacyIoAndIrq) {
  ResourceTemplate rt;
  rt.io(0x3F8, 1, 8).irq_no_flags(4);
  const Bytes d = rt.descriptors_with_end_tag();
  EXPECT_EQ(d, Bytes({0x47, 0x01, 0xF8, 0x03, 0xF8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00, 0x79, d.back()}));
  EXPECT_EQ(sum8(d), 0);
}

}  // namespace
}  // namespace minihv::boot::aml
