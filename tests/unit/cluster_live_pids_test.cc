// A fenced node's proof that its VMs are gone (cluster/live_pids.h): killed children are seen
// gone as soon as they have ended, and one that has not ended is named at the deadline. Real
// child processes, reaped as the node's VmChild reaps them (waitid WNOWAIT, then remove).
#include "cluster/live_pids.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace minihv::cluster {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

pid_t sleeping_child() {
  const pid_t p = ::fork();
  if (p == 0) {
    for (;;) ::pause();
  }
  return p;
}

// What a VmChild's reaper does: once the child has ended (a zombie), remove it, then reap it.
std::thread reaper(LivePids& pids, pid_t p) {
  return std::thread([&pids, p] {
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(p), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR) {
    }
    pids.remove(p);
    ::waitpid(p, nullptr, 0);
  });
}

TEST(LivePids, KilledChildrenAreSeenGoneAsSoonAsTheyHaveEnded) {
  LivePids pids;
  const pid_t a = sleeping_child(), b = sleeping_child();
  ASSERT_GT(a, 0);
  ASSERT_GT(b, 0);
  pids.add(a);
  pids.add(b);
  std::thread ra = reaper(pids, a), rb = reaper(pids, b);
  // Not killed yet: both are still there at the deadline.
  EXPECT_EQ(pids.wait_gone(Clock::now() + 100ms).size(), 2u);
  const auto t = Clock::now();
  pids.kill_all();
  EXPECT_TRUE(pids.wait_gone(t + 10s).empty());
  EXPECT_LT(Clock::now() - t, 5s) << "seen gone only at the deadline";
  ra.join();
  rb.join();
}

TEST(LivePids, OneThatHasNotEndedIsNamedAtTheDeadline) {
  LivePids pids;
  const pid_t stuck = sleeping_child(), killed = sleeping_child();
  ASSERT_GT(stuck, 0);
  ASSERT_GT(killed, 0);
  pids.add(killed);
  std::thread r = reaper(pids, killed);
  pids.kill_all();
  // `stuck` stands for a process whose end waits on a write stuck in the kernel: it is there, and
  // nothing says it ended.
  pids.add(stuck);
  const auto t = Clock::now();
  const auto still = pids.wait_gone(t + 300ms);
  EXPECT_GE(Clock::now() - t, 300ms);
  ASSERT_EQ(still.size(), 1u);
  EXPECT_EQ(still[0], stuck);
  r.join();
  ::kill(stuck, SIGKILL);
  ::waitpid(stuck, nullptr, 0);
}

}  // namespace
}  // namespace minihv::cluster
