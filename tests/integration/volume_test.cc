// The shared volume with real minihv processes on one volume file: disks, leases, takeover.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/harness/harness.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The volume's default lease timings (blockdev/layout.h): the test checks against them.
constexpr auto kFail = 800ms;
constexpr auto kDead = 1400ms;

// Runs `minihv <args>` to the end; returns {exit status, stdout, stderr}. (popen: every byte of
// output is read before the status is taken.)
struct CliResult {
  int status = -1;
  std::string out, err;
};
std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
CliResult cli(const std::vector<std::string>& args) {
  TempDir tmp;
  std::string cmd = quote(minihv_binary());
  for (const auto& a : args) cmd += " " + quote(a);
  cmd += " 2>" + quote(tmp.file("err"));
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream f(tmp.file("err"));
  r.err.assign(std::istreambuf_iterator<char>(f), {});
  return r;
}

class Volume : public ::testing::Test {
protected:
  void SetUp() override {
    vol_ = dir_.file("shared.vol");
    auto f = cli({"volume", "format", vol_, "--size", "256M", "--cluster", "lab"});
    ASSERT_EQ(f.status, 0) << f.err;
    for (const char* d : {"a", "b"}) {
      auto c = cli({"volume", "disk", "create", vol_, d, "--size", "16M"});
      ASSERT_EQ(c.status, 0) << c.err;
    }
  }
  std::vector<std::string> vm_args(const std::string& disk, const std::string& cmdline = "disk") {
    return {"run", "--kernel", testguest_elf(), "--cmdline", cmdline, "--mem", "128M", "--disk", vol_ + ":" + disk};
  }
  nlohmann::json inspect() {
    auto r = cli({"volume", "inspect", vol_, "--json"});
    EXPECT_EQ(r.status, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  }
  nlohmann::json disk_lease(const std::string& name) {
    const nlohmann::json j = inspect();
    for (const auto& d : j["disks"])
      if (d["name"] == name) return d["lease"];
    return {};
  }
  TempDir dir_;
  std::string vol_;
};

void expect_clean_disk_run(const VmProcess& vm) {
  EXPECT_TRUE(vm.lines_matching("CORRUPT").empty()) << vm.stdout_text();
  EXPECT_TRUE(vm.lines_matching("errs=[1-9]").empty()) << vm.stdout_text();
  EXPECT_TRUE(vm.lines_matching("DISK ioerr").empty()) << vm.stdout_text();
}

TEST_F(Volume, FormatRefusesToOverwriteWithoutForce) {
  auto again = cli({"volume", "format", vol_, "--size", "256M", "--cluster", "other"});
  EXPECT_EQ(again.status, 2) << again.err;
  EXPECT_NE(again.err.find("already a minihv volume of cluster 'lab'"), std::string::npos) << again.err;
  EXPECT_EQ(inspect()["disks"].size(), 2u) << "the volume must be untouched";
  auto dup = cli({"volume", "disk", "create", vol_, "a", "--size", "1M"});
  EXPECT_EQ(dup.status, 2) << dup.err;
}

TEST_F(Volume, TwoVmsOnTwoDisksRunAtOnce) {
  VmProcess a(vm_args("a")), b(vm_args("b"));
  ASSERT_TRUE(a.wait_line("^DISK resume last=0 ", 30s)) << a.stdout_text() << a.stderr_text();
  ASSERT_TRUE(b.wait_line("^DISK resume last=0 ", 30s)) << b.stdout_text() << b.stderr_text();
  ASSERT_TRUE(a.wait_line("^HB cpu=0 seq=4 ", 30s)) << a.stdout_text() << a.stderr_text();
  ASSERT_TRUE(b.wait_line("^HB cpu=0 seq=4 ", 30s)) << b.stdout_text() << b.stderr_text();
  EXPECT_GT(last_acknowledged(a), 0);
  EXPECT_GT(last_acknowledged(b), 0);
  auto la = disk_lease("a"), lb = disk_lease("b");
  EXPECT_EQ(la["state"], "held");
  EXPECT_EQ(lb["state"], "held");
  EXPECT_NE(la["owner"].get<std::string>().find("pid " + std::to_string(a.pid())), std::string::npos) << la;
  EXPECT_NE(lb["owner"].get<std::string>().find("pid " + std::to_string(b.pid())), std::string::npos) << lb;
  a.kill(SIGTERM);
  b.kill(SIGTERM);
  EXPECT_EQ(a.wait_exit(15s), 0) << a.stderr_text();
  EXPECT_EQ(b.wait_exit(15s), 0) << b.stderr_text();
  expect_clean_disk_run(a);
  expect_clean_disk_run(b);
  EXPECT_EQ(disk_lease("a")["state"], "free") << "a clean stop releases the lease";
  EXPECT_EQ(disk_lease("b")["state"], "free");
  // Each disk kept its own records: a restarted VM on `a` resumes from a's last record, not b's.
  const long acked_a = last_acknowledged(a);
  VmProcess again(vm_args("a", "disk secs=5"));
  auto resume = again.wait_line("^DISK resume last=\\d+", 30s);
  ASSERT_TRUE(resume) << again.stdout_text() << again.stderr_text();
  EXPECT_GE(std::stol(resume->substr(resume->find("last=") + 5)), acked_a) << *resume;
  EXPECT_EQ(again.wait_exit(30s), 0) << again.stderr_text();
  expect_clean_disk_run(again);
}

TEST_F(Volume, SecondVmOnAHeldDiskIsRefusedWithTheHoldersName) {
  VmProcess a(vm_args("a"));
  ASSERT_TRUE(a.wait_line("^HB cpu=0 seq=2 ", 30s)) << a.stdout_text() << a.stderr_text();
  const auto t0 = Clock::now();
  VmProcess b(vm_args("a"));
  EXPECT_EQ(b.wait_exit(30s), 2) << b.stderr_text();
  EXPECT_LT(Clock::now() - t0, kDead) << "a live holder is recognised before the dead timeout";
  EXPECT_NE(b.stderr_text().find("pid " + std::to_string(a.pid())), std::string::npos) << b.stderr_text();
  EXPECT_TRUE(b.lines_matching("minihv-testguest: boot").empty()) << "the refused VM must not boot";
  // The holder is undisturbed.
  const long before = last_acknowledged(a);
  ASSERT_TRUE(a.wait_line("^HB cpu=0 seq=5 ", 30s)) << a.stdout_text();
  EXPECT_GT(last_acknowledged(a), before);
  expect_clean_disk_run(a);
  // A held disk cannot be removed either.
  auto rm = cli({"volume", "disk", "rm", vol_, "a"});
  EXPECT_EQ(rm.status, 2) << rm.err;
  EXPECT_NE(rm.err.find("pid " + std::to_string(a.pid())), std::string::npos) << rm.err;
}

TEST_F(Volume, KilledHoldersDiskIsTakenOverOnlyAfterTheDeadTimeout) {
  long acked = -1;
  Clock::time_point killed;
  {
    VmProcess a(vm_args("a"));
    ASSERT_TRUE(a.wait_line("^HB cpu=0 seq=3 ", 30s)) << a.stdout_text() << a.stderr_text();
    acked = last_acknowledged(a);
    ASSERT_GT(acked, 0);
    a.kill(SIGKILL);
    killed = Clock::now();
    a.wait_exit(10s);
    expect_clean_disk_run(a);
  }
  EXPECT_EQ(disk_lease("a")["state"], "held") << "a killed holder's record stays until someone takes it";
  VmProcess b(vm_args("a"));
  auto boot = b.wait_line("^minihv-testguest: boot", 30s);
  const auto took = Clock::now() - killed;
  ASSERT_TRUE(boot) << b.stdout_text() << b.stderr_text();
  EXPECT_GE(took, kDead) << "the disk was taken over before the dead timeout";
  EXPECT_LT(took, kDead + 5s) << "takeover took far longer than the dead timeout";
  auto resume = b.wait_line("^DISK resume last=\\d+", 30s);
  ASSERT_TRUE(resume) << b.stdout_text();
  EXPECT_GE(std::stol(resume->substr(resume->find("last=") + 5)), acked) << "acknowledged records lost: " << *resume;
  ASSERT_TRUE(b.wait_line("^HB cpu=0 seq=3 ", 30s)) << b.stdout_text();
  EXPECT_GT(last_acknowledged(b), acked);
  expect_clean_disk_run(b);
  EXPECT_NE(disk_lease("a")["owner"].get<std::string>().find("pid " + std::to_string(b.pid())), std::string::npos);
}

TEST_F(Volume, FrozenHolderStopsWithoutWritingWhenItWakes) {
  VmProcess a(vm_args("a"));
  ASSERT_TRUE(a.wait_line("^HB cpu=0 seq=3 ", 30s)) << a.stdout_text() << a.stderr_text();
  a.kill(SIGSTOP);
  const auto stopped = Clock::now();
  // A new VM takes the disk over while the holder is frozen...
  VmProcess b(vm_args("a"));
  ASSERT_TRUE(b.wait_line("^DISK resume last=\\d+", 30s)) << b.stdout_text() << b.stderr_text();
  EXPECT_GE(Clock::now() - stopped, kDead);
  ASSERT_TRUE(b.wait_line("^HB cpu=0 seq=3 ", 30s)) << b.stdout_text();
  // ...and the holder wakes: it must end (exit 1) without one more write to the disk.
  a.kill(SIGCONT);
  EXPECT_EQ(a.wait_exit(15s), 1) << a.stderr_text();
  EXPECT_NE(a.stderr_text().find("lease lost"), std::string::npos) << a.stderr_text();
  // B keeps writing and reading back its records: a stray write from A would show as CORRUPT
  // (B reads back every record it writes) or as errs on B's next boot.
  ASSERT_TRUE(b.wait_line("^HB cpu=0 seq=6 ", 30s)) << b.stdout_text();
  expect_clean_disk_run(b);
  b.kill(SIGTERM);
  EXPECT_EQ(b.wait_exit(15s), 0) << b.stderr_text();
  VmProcess c(vm_args("a", "disk secs=5"));
  ASSERT_TRUE(c.wait_line("^DISK resume last=\\d+", 30s)) << c.stdout_text() << c.stderr_text();
  EXPECT_EQ(c.wait_exit(30s), 0) << c.stderr_text();
  expect_clean_disk_run(c);
}

TEST_F(Volume, HolderFrozenPastFailEndsEvenWithoutAContender) {
  VmProcess a(vm_args("a"));
  ASSERT_TRUE(a.wait_line("^HB cpu=0 seq=2 ", 30s)) << a.stdout_text() << a.stderr_text();
  a.kill(SIGSTOP);
  std::this_thread::sleep_for(kFail + 400ms);
  a.kill(SIGCONT);
  EXPECT_EQ(a.wait_exit(15s), 1) << a.stderr_text();
  EXPECT_NE(a.stderr_text().find("fail timeout"), std::string::npos) << a.stderr_text();
}

}  // namespace
}  // namespace minihv::test
