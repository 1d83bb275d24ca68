// Runs in the hw lane (scripts/hw-lane). Debian's kernel with a virtio-blk disk live-migrates
// between two minihv processes and carries on: a shell loop counting every 100 ms goes on without
// a restart, what was written to the disk before the move reads back from the device after it,
// and the kernel complains of no clocksource or RCU stall.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "tests/harness/harness.h"
#include "tests/hw/linux_boot.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

// The loop's counts in console text, line by line ("tick N", CR LF). Only whole lines: a line the
// pause cut goes on in the destination's output, so the two consoles are read joined.
std::vector<long> ticks(const std::string& console) {
  std::vector<long> out;
  // The shell's prompt for the next command may come out in front of a tick ("/ # tick 2"): the
  // loop runs in the background and the prompt is printed when it is started. Busybox's line
  // editor may follow the prompt with a cursor-position query ("/ # \x1b[6ntick 2").
  static const std::regex tick("(?:/ # )?(?:\x1b\\[[0-9;]*[A-Za-z])*tick ([0-9]+)\r?");
  std::istringstream lines(console.substr(0, console.rfind('\n') + 1));
  std::string l;
  std::smatch m;
  while (std::getline(lines, l))
    if (std::regex_match(l, m, tick)) out.push_back(std::stol(m[1]));
  return out;
}

TEST(HwLinux, AGuestWithADiskMigratesAndCarriesOn) {
  const std::string kit = source_dir() + "/guest-kit";
  struct stat st{};
  ASSERT_EQ(stat((kit + "/vmlinuz").c_str(), &st), 0) << "run scripts/guest-kit";
  TempDir dir;
  const std::string disk = dir.file("disk.img");
  std::ofstream(disk).close();
  ASSERT_EQ(truncate(disk.c_str(), 16 << 20), 0);
  const std::vector<std::string> machine{"--kernel", kit + "/vmlinuz", "--initrd", kit + "/initrd.cpio.gz",
                                         "--mem", "256M", "--cpus", "1", "--disk", disk,
                                         "--cmdline", "console=ttyS0 panic=-1"};
  std::vector<std::string> a{"run", "--api", dir.file("src.sock")};
  a.insert(a.end(), machine.begin(), machine.end());
  LinuxBoot boot = boot_linux([&] { return std::make_unique<VmProcess>(VmProcess::WithTerminal{}, a); },
                              "init: modules loaded", 120s);
  VmProcess& src = *boot.vm;
  ASSERT_TRUE(boot.ready) << src.stdout_tail() << src.stderr_text();
  // Write a marker straight to the device, then count in the background.
  ASSERT_TRUE(src.type("echo hw-disk-marker-7 | dd of=/dev/vda conv=fsync 2>/dev/null && echo wrote-$((1+1))\n"));
  ASSERT_TRUE(src.wait_line("^wrote-2\\r?$", 30s)) << src.stdout_tail();
  ASSERT_TRUE(src.type("i=0; while true; do i=$((i+1)); echo \"tick $i\"; usleep 100000; done &\n"));
  ASSERT_TRUE(src.wait_line("^tick 20\\r?$", 30s)) << src.stdout_tail();

  const int port = free_port();
  std::vector<std::string> b{"-v", "run", "--api", dir.file("dst.sock")};
  b.insert(b.end(), machine.begin(), machine.end());
  b.insert(b.end(), {"--incoming", "127.0.0.1:" + std::to_string(port)});
  VmProcess dst(VmProcess::WithTerminal{}, b);
  ASSERT_TRUE(dst.wait_stderr("waiting for a migrating VM", 30s)) << dst.stderr_text();
  auto r = migrate(dir.file("src.sock"), "127.0.0.1:" + std::to_string(port), {"--verify"});
  ASSERT_EQ(r.exit, 0) << r.stderr_text << r.json.dump(2);
  EXPECT_EQ(src.wait_exit(30s), 0) << src.stderr_text();
  const std::vector<long> before = ticks(src.stdout_text());
  ASSERT_FALSE(before.empty());

  // The loop goes on at the destination from where it was: the consoles joined count on without a
  // gap, a repeat or a restart ("tick 1" again).
  ASSERT_TRUE(dst.wait_line("^tick " + std::to_string(before.back() + 20) + "\\r?$", 60s)) << dst.stdout_tail();
  const std::vector<long> all = ticks(src.stdout_text() + dst.stdout_text());
  ASSERT_GT(all.size(), before.size());
  bool counted_on = true;
  for (size_t i = 1; i < all.size() && counted_on; ++i) {
    counted_on = all[i] == all[i - 1] + 1;
    EXPECT_TRUE(counted_on) << "tick " << all[i] << " after tick " << all[i - 1]
                            << (i < before.size() ? " (at the source)" : " (across the move or after it)") << ":\n"
                            << src.stdout_tail() << "\n---- destination:\n" << dst.stdout_tail();
  }

  // The disk: drop the page cache, then read the device itself.
  ASSERT_TRUE(dst.type("kill %1; sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=17 count=1 2>/dev/null; echo\n"));
  EXPECT_TRUE(dst.wait_line("^hw-disk-marker-7", 30s)) << dst.stdout_tail();
  // The kernel has nothing to complain about, at the source or the destination: its TSC and
  // kvm-clock stay in step (they drift apart when L1's KVM has no stable clock to give: see
  // hw_l1_cmdline in scripts/lib/hw-l1.sh).
  const std::string console = src.stdout_text() + dst.stdout_text();
  for (const char* complaint : {"Marking clocksource", "clocksource watchdog", "is unstable", "self-detected stall",
                                "rcu: INFO", "soft lockup"})
    EXPECT_EQ(console.find(complaint), std::string::npos) << "the kernel complained (" << complaint << "):\n" << console;
  ASSERT_TRUE(dst.type("poweroff -f\n"));
  EXPECT_EQ(dst.wait_exit(60s), 0) << dst.stderr_text();
}

}  // namespace
}  // namespace minihv::test
