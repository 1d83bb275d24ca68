// What a VM child's console lines tell its node (cluster/child_output.h).
#include <gtest/gtest.h>

#include <string>

#include "cluster/child_output.h"

namespace minihv::cluster {
namespace {

TEST(ConsoleLine, HeartbeatsCarryErrsAndTheLastRecord) {
  auto f = parse_console_line("HB cpu=0 seq=12 ms=3400 rec=77 errs=2");
  EXPECT_EQ(f.kind, ConsoleFact::kHeartbeat);
  EXPECT_EQ(f.errs, 2);
  EXPECT_EQ(f.rec, 77);
  f = parse_console_line("HB cpu=1 seq=3 ms=10 gen=4 pps=100 errs=0");
  EXPECT_EQ(f.kind, ConsoleFact::kHeartbeat);
  EXPECT_EQ(f.errs, 0);
  EXPECT_EQ(f.rec, -1);
}

TEST(ConsoleLine, CorruptResumeAndNoise) {
  EXPECT_EQ(parse_console_line("CORRUPT cpu=0 page=3 gpa=0x1000").kind, ConsoleFact::kCorrupt);
  auto f = parse_console_line("DISK resume last=41 valid=8");
  EXPECT_EQ(f.kind, ConsoleFact::kResume);
  EXPECT_EQ(f.resume, 41);
  EXPECT_EQ(parse_console_line("xHB cpu=0").kind, ConsoleFact::kNone);
  EXPECT_EQ(parse_console_line("").kind, ConsoleFact::kNone);
  f = parse_console_line("HB cpu=0 errs=zz");  // never throws, whatever the guest prints
  EXPECT_EQ(f.kind, ConsoleFact::kHeartbeat);
  EXPECT_EQ(f.errs, -1);
}

TEST(LineSplitter, LinesAcrossReadsAreJoined) {
  LineSplitter s(512);
  EXPECT_TRUE(s.feed("HB cpu=0 ").empty());
  auto lines = s.feed("errs=0\nCORR");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "HB cpu=0 errs=0");
  lines = s.feed("UPT\n\nDISK\n");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], "CORRUPT");
  EXPECT_EQ(lines[1], "");
  EXPECT_EQ(lines[2], "DISK");
}

TEST(LineSplitter, LongLinesAreCutAndTheirRestNeverBecomesALine) {
  LineSplitter s(8);
  auto lines = s.feed("0123456789\nab\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "01234567");
  EXPECT_EQ(lines[1], "ab");
  EXPECT_TRUE(s.feed("0123456789").empty());  // no end yet
  EXPECT_TRUE(s.feed("HB cpu=0 errs=0").empty());  // the same long line: not a line of its own
  lines = s.feed("cd\nef\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "01234567");
  EXPECT_EQ(lines[1], "ef");
}

}  // namespace
}  // namespace minihv::cluster
