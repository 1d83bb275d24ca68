// Runs in the hw lane, whose L1 loads softdog with soft_noboot=1 (a reset is logged, not done): a
// node with `--watchdog` pets it while its lease is current, disarms it on a clean stop, and a node
// frozen past its lease is reset by it (cluster/watchdog.h). This machine's kernel has no watchdog.
#include <signal.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include "tests/harness/cluster_lab.h"

namespace minihv::test {
namespace {

using namespace std::chrono_literals;

constexpr const char* kDevice = "/dev/watchdog";
constexpr const char* kFired = "softdog: Triggered - Reboot ignored";

long fired_count() {
  const std::string log = run_cmd({"dmesg"}).out;
  long n = 0;
  for (size_t at = log.find(kFired); at != std::string::npos; at = log.find(kFired, at + 1)) ++n;
  return n;
}

std::vector<std::string> with_watchdog(std::vector<std::string> args) {
  args.insert(args.end(), {"--watchdog", kDevice});
  return args;
}

TEST(HwWatchdog, PettedWhileTheLeaseHoldsDisarmedOnAStopAndFiredOnAFrozenNode) {
  ClusterLab c(1);
  ASSERT_TRUE(c.wait_all_up(0, 30s)) << c.node(0).stderr_text();
  ::kill(c.node(0).pid(), SIGTERM);
  ASSERT_EQ(c.wait_node_exit(0, 30s).value_or(-1), 0) << c.node(0).stderr_text();
  const long before = fired_count();

  {  // Armed, petted for 4 s (4 x the 1 s timeout of the default timings), then a clean stop.
    VmProcess node(with_watchdog(c.node_args(0)));
    ASSERT_TRUE(node.wait_stderr("watchdog /dev/watchdog armed (1 s)", 30s)) << node.stderr_text();
    std::this_thread::sleep_for(4s);
    EXPECT_EQ(fired_count(), before) << "fired while the node renewed its lease";
    ::kill(node.pid(), SIGTERM);
    EXPECT_EQ(node.wait_exit(30s).value_or(-1), 0) << node.stderr_text();
    std::this_thread::sleep_for(3s);
    EXPECT_EQ(fired_count(), before) << "fired after a clean stop: not disarmed";
  }
  {  // Frozen: no pets, and the device fires before another node could take over (`dead`).
    VmProcess node(with_watchdog(c.node_args(0)));
    ASSERT_TRUE(node.wait_stderr("watchdog /dev/watchdog armed", 30s)) << node.stderr_text();
    ::kill(node.pid(), SIGSTOP);
    std::this_thread::sleep_for(3s);
    EXPECT_GT(fired_count(), before) << "a frozen node was not reset";
    ::kill(node.pid(), SIGCONT);
    EXPECT_EQ(node.wait_exit(30s).value_or(-1), 1) << "thawed, it must find itself fenced\n" << node.stderr_text();
    EXPECT_NE(node.stderr_text().find("stays armed and unpetted"), std::string::npos) << node.stderr_text();
  }
}

}  // namespace
}  // namespace minihv::test
