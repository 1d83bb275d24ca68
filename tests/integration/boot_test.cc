// Boots the test guest under real KVM in real minihv processes.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <thread>

#include "tests/harness/harness.h"
#include "vmm/api.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> guest_args(const std::string& cmdline, const std::string& mem = "256M",
                                    int cpus = 1) {
  return {"run", "--kernel", testguest_elf(), "--cmdline", cmdline, "--mem", mem, "--cpus", std::to_string(cpus)};
}

// Collects the heartbeats of `cpu` and checks that seq rises by exactly one with errs=0.
void expect_continuous(const VmProcess& vm, int cpu, long min_count) {
  long last = 0, count = 0;
  for (const auto& line : vm.lines_matching("^HB ")) {
    auto hb = parse_heartbeat(line);
    ASSERT_TRUE(hb) << "unparsable heartbeat: " << line;
    if (hb->cpu != cpu) continue;
    EXPECT_EQ(hb->errs, 0) << line;
    if (last) {
      EXPECT_EQ(hb->seq, last + 1) << "heartbeat sequence broke at: " << line;
    }
    last = hb->seq;
    ++count;
  }
  EXPECT_GE(count, min_count) << "too few heartbeats from cpu " << cpu << ":\n" << vm.stdout_text();
}

TEST(Boot, KvmIsThere) {
  // Every other test here needs it; say so plainly when it is missing instead of skipping.
  ASSERT_EQ(access("/dev/kvm", R_OK | W_OK), 0) << "/dev/kvm is not usable: these tests need real KVM";
  struct stat st{};
  ASSERT_EQ(stat(testguest_elf().c_str(), &st), 0) << testguest_elf() << " is missing: build the guest";
}

TEST(Boot, IdleGuestHeartbeatsAndStopsCleanly) {
  TempDir dir;
  auto args = guest_args("idle");
  args.insert(args.end(), {"--api", dir.file("api.sock")});
  VmProcess vm(args);
  ASSERT_TRUE(vm.wait_line("minihv-testguest: boot cpus=1 ", 20s)) << vm.stdout_text() << vm.stderr_text();
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=3 ", 20s)) << vm.stdout_text() << vm.stderr_text();
  auto status = api_call(dir.file("api.sock"), {{"cmd", "status"}});
  ASSERT_TRUE(status) << status.message();
  EXPECT_EQ((*status)["state"], "running");
  EXPECT_EQ((*status)["cpus"], 1);
  EXPECT_EQ(proc_status(vm.pid(), "NoNewPrivs"), "1") << "the VMM must not be able to gain privileges";
  auto stop = api_call(dir.file("api.sock"), {{"cmd", "stop"}});
  ASSERT_TRUE(stop) << stop.message();
  EXPECT_EQ((*stop)["ok"], true);
  EXPECT_EQ(vm.wait_exit(10s), 0) << vm.stderr_text();
  expect_continuous(vm, 0, 3);
  struct stat st{};
  EXPECT_NE(stat(dir.file("api.sock").c_str(), &st), 0) << "the control socket must be removed at exit";
}

// The PVH ABI allows ELF32 images (QEMU boots them): the test guest in an ELF32 container
// (objcopy -O elf32-i386, guest/CMakeLists.txt) boots and runs the same.
TEST(Boot, AnElf32PvhImageBoots) {
  const std::string elf32 = std::string(MINIHV_BINARY_DIR) + "/guest/testguest32.elf";
  std::ifstream f(elf32, std::ios::binary);
  char ident[5] = {};
  ASSERT_TRUE(f.read(ident, 5)) << elf32 << " is missing: build the guest";
  ASSERT_EQ(ident[4], 1) << "not an ELF32 file";
  VmProcess vm({"run", "--kernel", elf32, "--cmdline", "dirty mib=16 secs=2", "--mem", "256M"});
  ASSERT_EQ(vm.wait_exit(60s), 0) << vm.stdout_text() << vm.stderr_text();
  expect_continuous(vm, 0, 2);
  EXPECT_EQ(vm.lines_matching("^DONE cpu=0 errs=0").size(), 1u) << vm.stdout_text();
}

TEST(Boot, DirtyOnTwoVcpusHeartbeatsFromBoth) {
  VmProcess vm(guest_args("dirty mib=64 secs=4", "512M", 2));
  ASSERT_TRUE(vm.wait_line("minihv-testguest: boot cpus=2 ", 20s)) << vm.stdout_text() << vm.stderr_text();
  ASSERT_EQ(vm.wait_exit(60s), 0) << vm.stdout_text() << vm.stderr_text();
  expect_continuous(vm, 0, 2);
  expect_continuous(vm, 1, 2);
  EXPECT_TRUE(vm.lines_matching("CORRUPT").empty()) << vm.stdout_text();
  EXPECT_EQ(vm.lines_matching("^DONE cpu=\\d+ errs=0").size(), 2u) << vm.stdout_text();
}

TEST(Boot, GuestSeesEveryVcpu) {
  VmProcess vm(guest_args("idle secs=2", "128M", 4));
  EXPECT_TRUE(vm.wait_line("minihv-testguest: boot cpus=4 ", 30s)) << vm.stdout_text() << vm.stderr_text();
  EXPECT_EQ(vm.wait_exit(60s), 0) << vm.stderr_text();
  for (int cpu = 0; cpu < 4; ++cpu) expect_continuous(vm, cpu, 1);
}

TEST(Boot, PowerOffExitsZero) {
  VmProcess vm(guest_args("poweroff"));
  EXPECT_EQ(vm.wait_exit(30s), 0) << vm.stdout_text() << vm.stderr_text();
  EXPECT_FALSE(vm.lines_matching("^BYE").empty()) << vm.stdout_text();
}

TEST(Boot, RebootExitsThree) {
  VmProcess vm(guest_args("reboot"));
  EXPECT_EQ(vm.wait_exit(30s), 3) << vm.stdout_text() << vm.stderr_text();
  EXPECT_NE(vm.stderr_text().find("reboot"), std::string::npos) << vm.stderr_text();
}

TEST(Boot, TripleFaultExitsFourWithAMessage) {
  VmProcess vm(guest_args("panic"));
  EXPECT_EQ(vm.wait_exit(30s), 4) << vm.stdout_text() << vm.stderr_text();
  EXPECT_NE(vm.stderr_text().find("triple fault"), std::string::npos) << vm.stderr_text();
}

TEST(Boot, PauseAndResumeKeepTheHeartbeatSequence) {
  TempDir dir;
  auto args = guest_args("idle");
  args.insert(args.end(), {"--api", dir.file("api.sock")});
  VmProcess vm(args);
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=2 ", 20s)) << vm.stdout_text() << vm.stderr_text();
  auto paused = api_call(dir.file("api.sock"), {{"cmd", "pause"}});
  ASSERT_TRUE(paused && (*paused)["ok"] == true) << (paused ? paused->dump() : paused.message());
  const size_t before = vm.lines_matching("^HB ").size();
  std::this_thread::sleep_for(2500ms);
  auto st = api_call(dir.file("api.sock"), {{"cmd", "status"}});
  ASSERT_TRUE(st);
  EXPECT_EQ((*st)["state"], "paused");
  EXPECT_EQ(vm.lines_matching("^HB ").size(), before) << "a paused guest printed heartbeats";
  auto again = api_call(dir.file("api.sock"), {{"cmd", "pause"}});
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)["ok"], false) << "pausing twice must be refused";
  auto resumed = api_call(dir.file("api.sock"), {{"cmd", "resume"}});
  ASSERT_TRUE(resumed && (*resumed)["ok"] == true);
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=5 ", 20s)) << vm.stdout_text();
  vm.kill(SIGTERM);
  EXPECT_EQ(vm.wait_exit(10s), 0) << vm.stderr_text();
  expect_continuous(vm, 0, 5);
  EXPECT_FALSE(vm.lines_matching("^STALL cpu=0 ms=\\d+").empty())
      << "the guest should have seen the pause as a stall:\n" << vm.stdout_text();
}

TEST(Boot, ConsoleGoesToAFileWhenAsked) {
  TempDir dir;
  auto args = guest_args("poweroff");
  args.insert(args.end(), {"--console", dir.file("console.log")});
  VmProcess vm(args);
  ASSERT_EQ(vm.wait_exit(30s), 0) << vm.stderr_text();
  EXPECT_TRUE(vm.lines_matching("BYE").empty()) << "console leaked to stdout";
  std::ifstream f(dir.file("console.log"));
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("BYE"), std::string::npos) << text;
}

}  // namespace
}  // namespace minihv::test

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

TEST(Disk, RecordsSurviveAVmRestart) {
  TempDir dir;
  const std::string img = dir.file("disk.img");
  make_image(img, 64 << 20);
  auto args = [&](const std::string& cmdline) {
    return std::vector<std::string>{"run", "--kernel", testguest_elf(), "--cmdline", cmdline, "--mem", "256M",
                                    "--disk", img, "--api", dir.file("api.sock")};
  };
  long acked = -1;
  {
    VmProcess vm(args("disk"));
    ASSERT_TRUE(vm.wait_line("^DISK resume last=0 ", 20s)) << vm.stdout_text() << vm.stderr_text();
    ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=3 ", 20s)) << vm.stdout_text() << vm.stderr_text();
    acked = last_acknowledged(vm);
    ASSERT_GT(acked, 0) << vm.stdout_text();
    vm.kill(SIGKILL);  // no clean shutdown: only what was acknowledged may be counted on
    vm.wait_exit(10s);
    EXPECT_TRUE(vm.lines_matching("errs=[1-9]").empty()) << vm.stdout_text();
  }
  VmProcess vm(args("disk secs=5"));
  auto resume = vm.wait_line("^DISK resume last=\\d+", 20s);
  ASSERT_TRUE(resume) << vm.stdout_text() << vm.stderr_text();
  const long last = std::stol(resume->substr(resume->find("last=") + 5));
  EXPECT_GE(last, acked) << "an acknowledged record was lost: " << *resume;
  ASSERT_EQ(vm.wait_exit(30s), 0) << vm.stdout_text() << vm.stderr_text();
  EXPECT_TRUE(vm.lines_matching("CORRUPT").empty()) << vm.stdout_text();
  EXPECT_FALSE(vm.lines_matching("^DONE cpu=0 errs=0").empty()) << vm.stdout_text();
  auto st = vm.lines_matching("^HB cpu=0 ");
  ASSERT_FALSE(st.empty());
  EXPECT_GT(last_acknowledged(vm), last) << "the restarted guest must keep writing";
}

TEST(Disk, StatsCountTheGuestsIo) {
  TempDir dir;
  const std::string img = dir.file("disk.img");
  make_image(img, 16 << 20);
  VmProcess vm({"run", "--kernel", testguest_elf(), "--cmdline", "disk", "--mem", "256M", "--disk", img, "--api",
                dir.file("api.sock")});
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=2 ", 20s)) << vm.stdout_text() << vm.stderr_text();
  auto stats = api_call(dir.file("api.sock"), {{"cmd", "stats"}});
  ASSERT_TRUE(stats) << stats.message();
  const auto& d = (*stats)["disks"].at(0);
  EXPECT_GT(d["writes"].get<uint64_t>(), 0u) << stats->dump();
  EXPECT_GT(d["flushes"].get<uint64_t>(), 0u) << stats->dump();
  EXPECT_GT(d["reads"].get<uint64_t>(), 0u) << stats->dump();
  EXPECT_EQ(d["errors"].get<uint64_t>(), 0u) << stats->dump();
  EXPECT_GT((*stats)["vmm_rss_bytes"].get<uint64_t>(), 0u);
}

}  // namespace
}  // namespace minihv::test
