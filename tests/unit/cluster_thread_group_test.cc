// cluster/thread_group.h: every thread it starts is joined, finished ones as new ones start.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "cluster/thread_group.h"

namespace minihv::cluster {
namespace {

TEST(ThreadGroup, JoinAllWaitsForEveryThread) {
  std::atomic<int> ran{0};
  ThreadGroup g;
  for (int i = 0; i < 8; ++i)
    g.spawn([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      ran++;
    });
  g.join_all();
  EXPECT_EQ(ran.load(), 8);
  EXPECT_EQ(g.running(), 0u);
}

TEST(ThreadGroup, DestructorJoins) {
  std::atomic<bool> ran{false};
  {
    ThreadGroup g;
    g.spawn([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ran = true;
    });
  }
  EXPECT_TRUE(ran.load());
}

TEST(ThreadGroup, FinishedThreadsAreJoinedAsNewOnesStart) {
  ThreadGroup g;
  std::atomic<bool> release{false};
  g.spawn([&] {
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  EXPECT_EQ(g.running(), 1u);
  release = true;
  while (g.running() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  g.spawn([] {});
  g.join_all();
  EXPECT_EQ(g.running(), 0u);
}

}  // namespace
}  // namespace minihv::cluster
