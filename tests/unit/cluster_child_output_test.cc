// What a VM child's console and log lines tell its node (cluster/child_output.h).
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

TEST(LogLine, ListeningArrivedAndErrors) {
  auto f = parse_log_line("minihv: waiting for a migrating VM on 10.0.0.2:41234");
  EXPECT_EQ(f.kind, LogFact::kListening);
  EXPECT_EQ(f.text, "10.0.0.2:41234");
  f = parse_log_line("minihv: waiting for a migrating VM on [::1]:5 (2 streams)");
  EXPECT_EQ(f.text, "[::1]:5");
  EXPECT_EQ(parse_log_line("minihv: stopped while waiting for a migrating VM").kind, LogFact::kNone);
  EXPECT_EQ(parse_log_line("minihv: incoming migration complete: the VM runs here").kind, LogFact::kArrived);
  f = parse_log_line("minihv: error: disk: no such disk");
  EXPECT_EQ(f.kind, LogFact::kError);
  EXPECT_EQ(f.text, "disk: no such disk");
  f = parse_log_line("minihv: error: " + std::string(1000, 'x'));
  EXPECT_EQ(f.text.size(), kMaxErrorText);
  EXPECT_EQ(parse_log_line("minihv: warning: slow").kind, LogFact::kNone);
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

TEST(LineSplitter, LongLinesAreCutAndEndlessOnesDropped) {
  LineSplitter s(8);
  auto lines = s.feed("0123456789\nab\n");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "01234567");
  EXPECT_EQ(lines[1], "ab");
  EXPECT_TRUE(s.feed("0123456789").empty());  // no end: dropped
  lines = s.feed("cd\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "cd");
}

}  // namespace
}  // namespace minihv::cluster
