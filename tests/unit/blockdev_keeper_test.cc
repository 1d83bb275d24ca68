// The lease keeper with the real clock and short timings: it renews, reports a lost lease once,
// and releases.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "blockdev/lease_keeper.h"
#include "blockdev/mem_device.h"
#include "blockdev/volume.h"

namespace minihv::blockdev {
namespace {

using namespace std::chrono_literals;

struct RealVolume {
  std::shared_ptr<MemDevice> dev = std::make_shared<MemDevice>(32ull << 20);
  std::unique_ptr<Volume> vol;
  RealVolume() {
    FormatOptions o;
    o.cluster = "lab";
    o.timings.renew = 20ms;
    o.timings.fail = 100ms;
    o.timings.dead = 150ms;
    o.timings.io_timeout = 10ms;
    EXPECT_TRUE(Volume::format_device(*dev, o, system_clock()));
    vol = std::move(*Volume::open_device(dev, system_clock()));
  }
};

TEST(BlockdevKeeper, RenewsAndReleases) {
  RealVolume v;
  auto slot = *v.vol->vm_slot(0, "disk x");
  auto l = v.vol->acquire(slot, "A");
  ASSERT_TRUE(l);
  std::atomic<int> lost{0};
  {
    LeaseKeeper k(std::move(*l), [&](const std::string&) { ++lost; });
    std::this_thread::sleep_for(300ms);  // three fail timeouts
    EXPECT_TRUE(k.validity()->may_write());
    EXPECT_GE(k.renewals(), 5u);
    ASSERT_TRUE(k.release());
    EXPECT_FALSE(k.validity()->may_write());
  }
  EXPECT_EQ(lost, 0);
  auto r = v.vol->read_lease(slot);
  ASSERT_TRUE(r && r->ok());
  EXPECT_EQ(r->rec.state, LeaseState::kFree);
}

TEST(BlockdevKeeper, ReportsEveryRenewalWithItsTime) {
  RealVolume v;
  auto l = v.vol->acquire(*v.vol->vm_slot(0, "disk x"), "A");
  ASSERT_TRUE(l);
  std::atomic<int> good{0}, bad{0};
  std::atomic<int64_t> slowest{0};
  LeaseKeeper k(std::move(*l), nullptr, [&](Nanos took, bool ok) {
    ++(ok ? good : bad);
    if (took.count() > slowest) slowest = took.count();
  });
  std::this_thread::sleep_for(150ms);
  v.dev->set_failing(true);
  std::this_thread::sleep_for(50ms);
  v.dev->set_failing(false);
  ASSERT_TRUE(k.release());
  EXPECT_GE(good.load(), 3);
  EXPECT_EQ(static_cast<uint64_t>(good.load()), k.renewals()) << "one report per successful renewal";
  EXPECT_GE(bad.load(), 1) << "failed renewals are reported too";
  EXPECT_GT(slowest.load(), 0);
}

TEST(BlockdevKeeper, StorageLossEndsTheHolderAtTheFailTimeout) {
  RealVolume v;
  auto l = v.vol->acquire(*v.vol->vm_slot(0, "disk x"), "A");
  ASSERT_TRUE(l);
  std::atomic<int> lost{0};
  std::atomic<int64_t> lost_at{0};
  LeaseKeeper k(std::move(*l), [&](const std::string&) {
    ++lost;
    lost_at = system_clock().now().count();
  });
  std::this_thread::sleep_for(60ms);
  const Nanos cut = system_clock().now();
  v.dev->set_failing(true);
  for (int i = 0; i < 100 && !lost; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(lost, 1);
  EXPECT_FALSE(k.validity()->may_write());
  // Lost no later than fail (+ scheduling slack) after the last good renewal, and well before dead.
  EXPECT_LT(Nanos(lost_at.load()) - cut, 100ms + 40ms);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(lost, 1) << "reported once";
}

TEST(BlockdevKeeper, TakeoverIsReported) {
  RealVolume v;
  auto slot = *v.vol->vm_slot(0, "disk x");
  auto l = v.vol->acquire(slot, "A");
  ASSERT_TRUE(l);
  std::atomic<int> lost{0};
  LeaseKeeper k(std::move(*l), [&](const std::string&) { ++lost; });
  // Someone (wrongly) overwrites the record: the next renewal notices.
  LeaseRecord intruder;
  intruder.state = LeaseState::kHeld;
  intruder.nonce = 42;
  intruder.owner = "intruder";
  Block b;
  intruder.encode(b, slot.offset, v.vol->super().uuid);
  ASSERT_TRUE(v.dev->write(slot.offset, b.span()));
  for (int i = 0; i < 50 && !lost; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(lost, 1);
  EXPECT_FALSE(k.validity()->may_write());
}

}  // namespace
}  // namespace minihv::blockdev
