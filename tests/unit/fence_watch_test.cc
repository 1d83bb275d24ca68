// vmm/fence_watch: a VM ends when its opened fence stops allowing writes (a manual clock).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "vmm/fence_watch.h"

namespace minihv {
namespace {

using namespace std::chrono_literals;

bool eventually(const std::atomic<int>& ends, int want) {
  for (int i = 0; i < 2000 && ends.load() != want; ++i) std::this_thread::sleep_for(1ms);
  return ends.load() == want;
}

TEST(FenceWatch, EndsTheVmOnceWhenTheFenceLapses) {
  auto fence = blockdev::Fence::create();
  ASSERT_TRUE(fence) << fence.message();
  blockdev::ManualClock clock;
  (*fence)->extend_to(clock.now() + 1s);
  std::atomic<int> ends{0};
  VmEnd why = VmEnd::kStopped;
  FenceWatch watch(*fence, [&](VmEnd w, const std::string&) { why = w; ++ends; }, clock);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(ends.load(), 0);
  clock.advance(2s);
  ASSERT_TRUE(eventually(ends, 1));
  EXPECT_EQ(why, VmEnd::kError);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(ends.load(), 1);
}

TEST(FenceWatch, AFenceNeverOpenedEndsNothing) {
  auto fence = blockdev::Fence::create();
  ASSERT_TRUE(fence) << fence.message();
  blockdev::ManualClock clock;
  std::atomic<int> ends{0};
  {
    FenceWatch watch(*fence, [&](VmEnd, const std::string&) { ++ends; }, clock);
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(ends.load(), 0);
}

TEST(FenceWatch, WaitForOpenGivesUpAfterTheBackstop) {
  auto fence = blockdev::Fence::create();
  ASSERT_TRUE(fence) << fence.message();
  blockdev::ManualClock clock;
  EXPECT_FALSE(wait_for_fence_open(**fence, 10ms, clock));
  (*fence)->extend_to(clock.now() + 1s);
  EXPECT_TRUE(wait_for_fence_open(**fence, 10ms, clock));
}

}  // namespace
}  // namespace minihv
