// The Debian cloud kernel (from scripts/guest-kit) boots under minihv. On a software KVM such as
// PVM its ring-0 code is interpreted and it dies at an instruction that KVM cannot emulate; minihv
// must then say so clearly and exit, never hang. On hardware KVM it reaches GUEST-READY.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>

#include "tests/harness/harness.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

TEST(LinuxGuest, DebianKernelStartsAndEndsClearly) {
  const std::string kit = source_dir() + "/guest-kit";
  struct stat st{};
  ASSERT_EQ(stat((kit + "/vmlinuz").c_str(), &st), 0) << kit << "/vmlinuz is missing: run scripts/guest-kit";
  ASSERT_EQ(stat((kit + "/initrd.cpio.gz").c_str(), &st), 0) << "run scripts/guest-kit";
  VmProcess vm({"run", "--kernel", kit + "/vmlinuz", "--initrd", kit + "/initrd.cpio.gz", "--mem", "256M",
                "--cpus", "1", "--cmdline", "console=ttyS0 earlyprintk=serial,ttyS0,115200 panic=-1 quiet=0"});
  const auto deadline = std::chrono::steady_clock::now() + 280s;
  ASSERT_TRUE(vm.wait_line("Linux version", 240s))
      << "no 'Linux version' line within 240 s\nstdout:\n" << vm.stdout_text() << "\nstderr:\n" << vm.stderr_text();
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  // Either the kernel reaches its shell (hardware KVM) or minihv reports the emulation failure.
  auto ready = vm.wait_line("GUEST-READY", std::max(left, std::chrono::milliseconds(1000)));
  if (ready) {
    vm.kill(SIGTERM);
    EXPECT_EQ(vm.wait_exit(20s), 0);
    return;
  }
  auto rc = vm.wait_exit(20s);
  ASSERT_TRUE(rc) << "minihv neither reached GUEST-READY nor exited: it hangs\n" << vm.stderr_text();
  EXPECT_EQ(*rc, 1) << vm.stderr_text();
  EXPECT_NE(vm.stderr_text().find("emulation failure"), std::string::npos) << vm.stderr_text();
  EXPECT_NE(vm.stderr_text().find("RIP 0x"), std::string::npos) << vm.stderr_text();
  EXPECT_NE(vm.stderr_text().find("instruction bytes"), std::string::npos) << vm.stderr_text();
}

}  // namespace
}  // namespace minihv::test
