// The lease keeper with the real clock and short timings: it renews, reports a lost lease once,
// and releases.
#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "blockdev/lease_keeper.h"
#include "blockdev/lease_priority.h"
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

// A device whose writes can be held (a renewal stuck in slow storage).
class GatedDevice final : public Device {
public:
  explicit GatedDevice(std::shared_ptr<MemDevice> inner) : inner_(std::move(inner)) {}
  uint64_t size() const override { return inner_->size(); }
  const std::string& name() const override { return inner_->name(); }
  Status read(uint64_t offset, std::span<uint8_t> buf) override { return inner_->read(offset, buf); }
  Status write(uint64_t offset, std::span<const uint8_t> buf) override {
    std::unique_lock lock(mu_);
    stuck_ += hold_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !hold_; });
    return inner_->write(offset, buf);
  }
  Status zero(uint64_t offset, uint64_t len) override { return inner_->zero(offset, len); }
  void hold(bool h) {
    std::lock_guard lock(mu_);
    hold_ = h;
    cv_.notify_all();
  }
  bool wait_stuck(std::chrono::milliseconds t) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, t, [&] { return stuck_ > 0; });
  }

private:
  std::shared_ptr<MemDevice> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  int stuck_ = 0;
};

// abandon() stops the holder's writes at once, even with a renewal stuck in its write: it does
// not wait for that renewal (which would leave the lease writable until it ends) before revoking.
TEST(BlockdevKeeper, AbandonRevokesBeforeWaitingForARenewalInFlight) {
  auto mem = std::make_shared<MemDevice>(32ull << 20);
  FormatOptions o;
  o.cluster = "lab";
  o.timings.renew = 20ms;
  o.timings.fail = 3s;  // long: the validity must end by the abandon, not by running out
  o.timings.dead = 4s;
  o.timings.io_timeout = 100ms;
  ASSERT_TRUE(Volume::format_device(*mem, o, system_clock()));
  auto gated = std::make_shared<GatedDevice>(mem);
  auto vol = Volume::open_device(gated, system_clock());
  ASSERT_TRUE(vol) << vol.message();
  auto l = (*vol)->acquire(*(*vol)->vm_slot(0, "vm x"), "A");
  ASSERT_TRUE(l);
  std::atomic<int> lost{0};
  LeaseKeeper k(std::move(*l), [&](const std::string&) { ++lost; });
  gated->hold(true);
  ASSERT_TRUE(gated->wait_stuck(2s)) << "no renewal reached the device";
  std::thread abandoner([&] { k.abandon(); });
  bool revoked = false;
  for (int i = 0; i < 100 && !revoked; ++i) {
    revoked = !k.validity()->may_write();
    std::this_thread::sleep_for(5ms);
  }
  gated->hold(false);
  abandoner.join();
  EXPECT_TRUE(revoked) << "the lease stayed writable while its renewal was stuck";
  EXPECT_EQ(lost, 0);
  EXPECT_TRUE(k.lease().lost());
}

// How many of this process's threads run with SCHED_RR (field 41 of /proc/self/task/TID/stat).
int round_robin_threads() {
  int n = 0;
  for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(t.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));  // from field 3 on: the name may hold spaces
    std::string field;
    for (int i = 3; i <= 41 && rest >> field; ++i) {
    }
    n += field == std::to_string(SCHED_RR);
  }
  return n;
}

// The keeper is handed out only once its two threads run at lease priority: a VMM turns its
// sandbox on after set-up, and from then on a thread may not change its scheduling (a renewal
// thread that did it late ended the VMM).
TEST(BlockdevKeeper, ItsThreadsHaveTheirPriorityBeforeItIsHandedOut) {
  bool allowed = false;
  std::thread([&] {
    allowed = use_lease_priority() && sched_getscheduler(0) == SCHED_RR;
  }).join();
  if (!allowed) GTEST_SKIP() << "this process may not use SCHED_RR (not root, no CAP_SYS_NICE)";
  RealVolume v;
  auto l = v.vol->acquire(*v.vol->vm_slot(0, "disk x"), "A");
  ASSERT_TRUE(l);
  const int before = round_robin_threads();
  LeaseKeeper k(std::move(*l), [](const std::string&) {});
  EXPECT_EQ(round_robin_threads(), before + 2);
  ASSERT_TRUE(k.release());
}

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
