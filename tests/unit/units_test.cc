#include "common/units.h"

#include <gtest/gtest.h>

namespace minihv {
namespace {

TEST(ParseSize, Units) {
  EXPECT_EQ(*parse_size("4096"), 4096u);
  EXPECT_EQ(*parse_size("512", 1 << 20), 512ull << 20);
  EXPECT_EQ(*parse_size("1G"), 1ull << 30);
  EXPECT_EQ(*parse_size("1g"), 1ull << 30);
  EXPECT_EQ(*parse_size("2GiB"), 2ull << 30);
  EXPECT_EQ(*parse_size("3MB"), 3ull << 20);
  EXPECT_EQ(*parse_size("7k"), 7ull << 10);
  EXPECT_EQ(*parse_size("1T"), 1ull << 40);
}

TEST(ParseSize, DecimalsAsPeopleTypeThem) {
  EXPECT_EQ(*parse_size("1.5G"), 1536ull << 20);
  EXPECT_EQ(*parse_size("1.5", 1 << 20), 1536ull << 10);  // --mem 1.5 is 1.5 MiB
  EXPECT_EQ(*parse_size("0.25M"), 256ull << 10);
  EXPECT_EQ(*parse_size("2.0T"), 2ull << 40);
  EXPECT_EQ(*parse_size("0.5K"), 512u);
}

TEST(ParseSize, RejectsJunkWithAMessage) {
  for (const char* bad : {"", "G", "-1", "1X", "1.G", ".5G", "1..5G", "1.5.G", " 1G", "1 G", "1.3K", "0.5"}) {
    auto r = parse_size(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_TRUE(r.status().is_invalid_input());
      EXPECT_NE(r.message().find(bad), std::string::npos) << r.message();
    }
  }
}

TEST(ParseSize, RejectsOverflow) {
  EXPECT_FALSE(parse_size("18446744073709551616"));
  EXPECT_FALSE(parse_size("17179869184G"));
  EXPECT_TRUE(parse_size("18446744073709551615"));
  EXPECT_FALSE(parse_size("16777215.9999999999T"));  // too many decimals
  EXPECT_FALSE(parse_size("16777216.5T"));
  EXPECT_TRUE(parse_size("16777215.5T"));
}

TEST(FormatSize, Readable) {
  EXPECT_EQ(format_size(17), "17 B");
  EXPECT_EQ(format_size(4096), "4 KiB");
  EXPECT_EQ(format_size(1536ull << 20), "1.5 GiB");
}

}  // namespace
}  // namespace minihv
