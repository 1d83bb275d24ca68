// `minihv run` under its seccomp sandbox (common/sandbox.h): a guest with a disk and a rotating
// console runs its workload with every thread narrowed, and code in the VMM that a guest took
// over (the MINIHV_TEST_SANDBOX_PROBE hook, after set-up) cannot open files, exec, trace, make
// sockets, fork or type into a terminal (TIOCSTI): the VMM ends, naming the call.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/sandbox.h"
#include "tests/harness/harness.h"
#include "vmm/api.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> idle_guest() {
  return {"run", "--kernel", testguest_elf(), "--cmdline", "idle", "--mem", "256M"};
}

TEST(SandboxedVmm, EndsWhenCodeAGuestTookOverTriesAForbiddenCall) {
  struct Probe {
    std::string hook, call;
  };
  for (const Probe& p : {Probe{"vcpu:open", "openat"}, Probe{"vcpu:exec", "execve"}, Probe{"vcpu:ptrace", "ptrace"},
                         Probe{"device:socket", "socket"}, Probe{"migration:open", "openat"},
                         Probe{"control:fork", "clone"}, Probe{"vcpu:tiocsti", "ioctl"}}) {
    VmProcess vm(idle_guest(), {"MINIHV_TEST_SANDBOX_PROBE=" + p.hook});
    EXPECT_EQ(vm.wait_exit(30s * time_stretch()), sandbox::kViolationExit) << p.hook << ": " << vm.stderr_text();
    const std::string cls = p.hook.substr(0, p.hook.find(':'));
    EXPECT_NE(vm.stderr_text().find("sandbox: a " + cls + " thread"), std::string::npos) << vm.stderr_text();
    EXPECT_NE(vm.stderr_text().find("called " + p.call + " ("), std::string::npos) << p.hook << ": " << vm.stderr_text();
  }
}

// The hook itself can tell: without the sandbox the same call is allowed and the VM runs on.
TEST(SandboxedVmm, WithoutItTheSameCallIsAllowed) {
  TempDir dir;
  auto args = idle_guest();
  args.insert(args.end(), {"--no-sandbox", "--api", dir.file("api.sock")});
  VmProcess vm(args, {"MINIHV_TEST_SANDBOX_PROBE=vcpu:open"});
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=2 ", 30s * time_stretch())) << vm.stdout_text() << vm.stderr_text();
  EXPECT_EQ(proc_status(vm.pid(), "Seccomp"), "0");
  auto stop = api_call(dir.file("api.sock"), {{"cmd", "stop"}});
  ASSERT_TRUE(stop) << stop.message();
  EXPECT_EQ(vm.wait_exit(20s * time_stretch()), 0) << vm.stderr_text();
}

// The thread classes at work: the vCPUs, the disk's I/O thread (started at the guest's DRIVER_OK
// through the sandbox's own thread), the control socket. The workload's verdict is its own. (A
// console file that rotates on a vCPU thread: Tools.AConsoleFileIsCappedAndRotated.)
TEST(SandboxedVmm, ADiskGuestRunsItsWorkloadWithEveryThreadNarrowed) {
  TempDir dir;
  const std::string img = dir.file("disk.img");
  make_image(img, 16 << 20);
  VmProcess vm({"run", "--kernel", testguest_elf(), "--cmdline", "disk secs=4", "--mem", "256M", "--disk", img,
                "--api", dir.file("api.sock")});
  ASSERT_TRUE(vm.wait_line("^HB cpu=0 seq=2 ", 30s * time_stretch())) << vm.stdout_text() << vm.stderr_text();
  EXPECT_EQ(proc_status(vm.pid(), "Seccomp"), "2") << "the VMM runs without its seccomp filters";
  auto stats = api_call(dir.file("api.sock"), {{"cmd", "stats"}});
  ASSERT_TRUE(stats) << stats.message();
  EXPECT_GT((*stats)["disks"].at(0)["writes"].get<uint64_t>(), 0u) << stats->dump();
  ASSERT_EQ(vm.wait_exit(60s * time_stretch()), 0) << vm.stdout_text() << vm.stderr_text();
  EXPECT_FALSE(vm.lines_matching("^DONE cpu=0 errs=0").empty()) << vm.stdout_text();
}

}  // namespace
}  // namespace minihv::test
