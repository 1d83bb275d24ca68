// Delta leases with a fake clock on an in-memory volume: acquire, renew, expiry and takeover,
// a torn or foreign record, a frozen holder, release.
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "blockdev/lease.h"
#include "tests/unit/blockdev_test_util.h"

namespace minihv::blockdev {
namespace {

using testing::MemVolume;
using namespace std::chrono_literals;

// Steps an acquirer to its end on the manual clock, calling `between` at each wait.
template <typename F>
void run_to_end(LeaseAcquirer& a, ManualClock& clock, F between) {
  while (!a.done()) {
    const Nanos due = a.step();
    if (a.done()) break;
    while (clock.now() < due) {
      const Nanos step = std::min<Nanos>(due - clock.now(), 10ms);
      clock.advance(step);
      between();
    }
  }
}

LeaseSlot disk_slot(MemVolume& m, uint32_t i = 3) { return *m.vol->vm_slot(i, "disk d" + std::to_string(i)); }

TEST(BlockdevLease, AcquireFreeLeaseAfterTheSettleDelay) {
  MemVolume m;
  const Nanos t0 = m.clock.now();
  auto l = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(l) << l.message();
  EXPECT_EQ(m.clock.now() - t0, Nanos(m.timings().acquire_delay())) << "a claim is read back after the delay";
  EXPECT_TRUE((*l)->valid());
  auto r = m.vol->read_lease(disk_slot(m));
  ASSERT_TRUE(r && r->held());
  EXPECT_EQ(r->rec.owner, "A");
  EXPECT_EQ(r->rec.resource, "disk d3");
  EXPECT_EQ(r->rec.generation, 1u);
}

TEST(BlockdevLease, RenewalKeepsItValidAndExpiryEndsIt) {
  MemVolume m;
  auto l = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(l);
  Lease& lease = **l;
  const auto t = m.timings();
  for (int i = 0; i < 20; ++i) {
    m.clock.advance(t.renew);
    ASSERT_TRUE(lease.renew()) << i;
    EXPECT_TRUE(lease.valid());
  }
  EXPECT_EQ(lease.record().counter, 21u);
  m.clock.advance(t.fail - 1ms);
  EXPECT_TRUE(lease.valid()) << "valid until fail after the last renewal started";
  m.clock.advance(1ms);
  EXPECT_FALSE(lease.valid());
  const uint64_t writes = m.dev->writes();
  EXPECT_FALSE(lease.renew());
  EXPECT_TRUE(lease.lost());
  EXPECT_EQ(m.dev->writes(), writes) << "an expired holder must not write its record";
}

TEST(BlockdevLease, LiveHolderRefusesASecondContenderWithItsName) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "hostA/pid 1");
  ASSERT_TRUE(a);
  LeaseAcquirer b(*m.dev, m.clock, m.uuid(), disk_slot(m), m.timings(), "hostB/pid 2");
  Nanos last_renew = m.clock.now();
  run_to_end(b, m.clock, [&] {
    if (m.clock.now() - last_renew >= m.timings().renew) {
      ASSERT_TRUE((*a)->renew());
      last_renew = m.clock.now();
    }
  });
  ASSERT_EQ(b.phase(), LeaseAcquirer::Phase::kRefused);
  EXPECT_TRUE(b.status().is_invalid_input());
  EXPECT_NE(b.status().message().find("hostA/pid 1"), std::string::npos) << b.status().message();
  EXPECT_TRUE((*a)->valid());
}

TEST(BlockdevLease, DeadHolderIsTakenOverOnlyAfterTheDeadTimeout) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  // A dies (no more renewals). B starts watching right away.
  const Nanos died = m.clock.now();
  LeaseAcquirer b(*m.dev, m.clock, m.uuid(), disk_slot(m), m.timings(), "B");
  Nanos won_at{0};
  run_to_end(b, m.clock, [&] {
    auto r = m.vol->read_lease(disk_slot(m));
    if (r && r->held() && r->rec.owner == "B" && won_at.count() == 0) won_at = m.clock.now();
  });
  ASSERT_EQ(b.phase(), LeaseAcquirer::Phase::kWon) << b.status().message();
  EXPECT_GE(won_at - died, Nanos(m.timings().dead)) << "claimed before the dead timeout";
  EXPECT_FALSE((*a)->valid()) << "A's validity ended long before";
  auto lb = b.take();
  auto r = m.vol->read_lease(disk_slot(m));
  EXPECT_EQ(r->rec.generation, 2u);
  EXPECT_FALSE((*a)->renew()) << "A, were it to wake, finds its lease gone";
}

TEST(BlockdevLease, ReleasedLeaseIsFreeAtOnce) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  ASSERT_TRUE((*a)->release());
  EXPECT_FALSE((*a)->valid()) << "writes stop at release";
  const Nanos t0 = m.clock.now();
  auto b = m.vol->acquire(disk_slot(m), "B");
  ASSERT_TRUE(b) << b.message();
  EXPECT_EQ(m.clock.now() - t0, Nanos(m.timings().acquire_delay()));
}

TEST(BlockdevLease, TornRecordIsWatchedLikeAnUnknownHolder) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  m.clock.advance(m.timings().renew);
  m.dev->tear_next_write(1000);  // A dies in the middle of a renewal
  EXPECT_FALSE((*a)->renew());
  auto r = m.vol->read_lease(disk_slot(m));
  ASSERT_EQ(r->check, RecordCheck::kTorn);
  const Nanos t0 = m.clock.now();
  LeaseAcquirer b(*m.dev, m.clock, m.uuid(), disk_slot(m), m.timings(), "B");
  run_to_end(b, m.clock, [] {});
  ASSERT_EQ(b.phase(), LeaseAcquirer::Phase::kWon) << b.status().message();
  EXPECT_GE(m.clock.now() - t0, Nanos(m.timings().dead)) << "a torn record is not a free one";
}

TEST(BlockdevLease, WrongUuidRecordIsNeverTrustedAsFree) {
  MemVolume m;
  // A free record of another volume, copied into this slot.
  LeaseRecord foreign;
  Block b;
  foreign.encode(b, disk_slot(m).offset, random_uuid());
  std::memcpy(m.dev->raw(disk_slot(m).offset), b.bytes, kBlockSize);
  auto r = m.vol->read_lease(disk_slot(m));
  EXPECT_EQ(r->check, RecordCheck::kForeign);
  const Nanos t0 = m.clock.now();
  auto l = m.vol->acquire(disk_slot(m), "B");
  ASSERT_TRUE(l) << l.message();
  EXPECT_GE(m.clock.now() - t0, Nanos(m.timings().dead));
  // Our renewals then replace it with a record of this volume.
  EXPECT_EQ(m.vol->read_lease(disk_slot(m))->check, RecordCheck::kOk);
}

TEST(BlockdevLease, FrozenHolderDoesNotWriteWhenItWakes) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  auto gate = (*a)->validity();
  EXPECT_TRUE(gate->may_write());
  // SIGSTOP: nothing runs for longer than the fail timeout. Nobody has taken over yet.
  m.clock.advance(m.timings().fail + 5ms);
  EXPECT_FALSE(gate->may_write()) << "the data path must refuse writes on wake";
  const uint64_t writes = m.dev->writes();
  EXPECT_FALSE((*a)->renew());
  EXPECT_TRUE((*a)->lost());
  EXPECT_EQ(m.dev->writes(), writes) << "no write of any kind after the fail timeout";
  EXPECT_TRUE((*a)->release());
  EXPECT_EQ(m.dev->writes(), writes) << "an expired lease is not released by writing either";
}

TEST(BlockdevLease, FrozenHolderFindsItTakenOver) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  auto b = m.vol->acquire(disk_slot(m), "B");  // A frozen: B's sleeps move the clock
  ASSERT_TRUE(b) << b.message();
  EXPECT_FALSE((*a)->valid());
  const uint64_t writes = m.dev->writes();
  EXPECT_FALSE((*a)->renew());
  EXPECT_EQ(m.dev->writes(), writes);
  EXPECT_TRUE((*b)->renew());
  EXPECT_EQ(m.vol->read_lease(disk_slot(m))->rec.owner, "B");
}

TEST(BlockdevLease, RenewalIoErrorIsRetriedUntilFail) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  m.dev->set_failing(true);
  m.clock.advance(m.timings().renew);
  EXPECT_FALSE((*a)->renew());
  EXPECT_FALSE((*a)->lost()) << "one failed I/O is not a lost lease";
  m.dev->set_failing(false);
  EXPECT_TRUE((*a)->renew());
  EXPECT_TRUE((*a)->valid());
}

TEST(BlockdevLease, WaitingContenderGetsItWhenReleased) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  AcquireOptions o;
  o.wait_for_live_holder = true;
  o.max_wait = 10s;
  LeaseAcquirer b(*m.dev, m.clock, m.uuid(), disk_slot(m), m.timings(), "B", o);
  const Nanos t0 = m.clock.now();
  Nanos last = t0;
  run_to_end(b, m.clock, [&] {
    if (!*a) return;
    if (m.clock.now() - t0 >= 1s) {
      ASSERT_TRUE((*a)->release());
      a->reset();
    } else if (m.clock.now() - last >= m.timings().renew) {
      ASSERT_TRUE((*a)->renew());
      last = m.clock.now();
    }
  });
  ASSERT_EQ(b.phase(), LeaseAcquirer::Phase::kWon) << b.status().message();
  EXPECT_LT(m.clock.now() - t0, 1s + m.timings().dead);
}

// A write the holder issued before it died lands late (it was in flight, or the holder was not yet
// reaped): the record changes once more, well into the wait.
void land_late_write(MemVolume& m, const LeaseSlot& slot) {
  auto r = m.vol->read_lease(slot);
  ASSERT_TRUE(r && r->held());
  LeaseRecord rec = r->rec;
  ++rec.counter;
  Block b;
  rec.encode(b, slot.offset, m.uuid());
  ASSERT_TRUE(m.dev->write(slot.offset, b.span()));
}

TEST(BlockdevLease, ADeadHoldersLateWriteRestartsTheWatchButNeverEndsTheWait) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  const auto t = m.timings();
  AcquireOptions o;
  o.wait_for_live_holder = true;
  o.max_wait = 2 * t.dead;  // what a restarting node allows its previous incarnation
  LeaseAcquirer b(*m.dev, m.clock, m.uuid(), disk_slot(m), t, "B", o);
  const Nanos t0 = m.clock.now();
  // The old incarnation renews once more before the kill takes effect, then its last write, in
  // flight when it died, lands: each just before the `dead` watch would have run out.
  std::vector<Nanos> late = {t0 + t.dead * 9 / 10, t0 + t.dead * 18 / 10};
  size_t landed = 0;
  run_to_end(b, m.clock, [&] {
    if (landed < late.size() && m.clock.now() >= late[landed]) {
      land_late_write(m, disk_slot(m));
      ++landed;
    }
  });
  ASSERT_EQ(landed, late.size());
  ASSERT_EQ(b.phase(), LeaseAcquirer::Phase::kWon) << b.status().message();
  EXPECT_GE(m.clock.now() - late.back(), Nanos(t.dead)) << "the record must stand still for dead after its last change";
  EXPECT_GT(m.clock.now() - t0, Nanos(o.max_wait)) << "the wait outlasts max_wait counted from its start";
}

TEST(BlockdevLease, AHolderThatKeepsRenewingIsRefusedAfterMaxWait) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  const auto t = m.timings();
  AcquireOptions o;
  o.wait_for_live_holder = true;
  o.max_wait = 2 * t.dead;
  LeaseAcquirer b(*m.dev, m.clock, m.uuid(), disk_slot(m), t, "B", o);
  const Nanos t0 = m.clock.now();
  Nanos last = t0;
  run_to_end(b, m.clock, [&] {
    if (m.clock.now() - last >= t.renew) {
      ASSERT_TRUE((*a)->renew());
      last = m.clock.now();
    }
  });
  ASSERT_EQ(b.phase(), LeaseAcquirer::Phase::kRefused) << "a live twin is still refused";
  EXPECT_NE(b.status().message().find("kept renewing"), std::string::npos) << b.status().message();
  EXPECT_LE(m.clock.now() - t0, Nanos(o.max_wait + 2 * t.renew));
}

}  // namespace
}  // namespace minihv::blockdev

namespace minihv::blockdev {
namespace {

TEST(BlockdevLeaseHandOver, TheNewHolderAdoptsItWithoutAGapAndTheOldOneCannotWriteAgain) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  const uint64_t nonce = new_lease_nonce();
  const Nanos asked = m.clock.now();  // B hands A its nonce
  m.clock.advance(5ms);
  ASSERT_TRUE((*a)->hand_over("B", nonce));
  EXPECT_FALSE((*a)->valid()) << "A stops writing at once";
  EXPECT_FALSE((*a)->renew()) << "and never renews again";
  auto b = adopt_lease(*m.dev, m.clock, m.uuid(), disk_slot(m), m.timings(), "B", nonce, asked);
  ASSERT_TRUE(b) << b.message();
  EXPECT_TRUE((*b)->valid());
  EXPECT_EQ((*b)->validity()->until(), asked + Nanos(m.timings().fail));
  auto r = m.vol->read_lease(disk_slot(m));
  EXPECT_EQ(r->rec.owner, "B");
  EXPECT_EQ(r->rec.generation, 2u);
  ASSERT_TRUE((*b)->renew()) << "B holds it as if it had claimed it";
  EXPECT_GT((*b)->validity()->until(), asked + Nanos(m.timings().fail));
}

TEST(BlockdevLeaseHandOver, AWrongNonceOrALateAdoptionIsRefused) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  const uint64_t nonce = new_lease_nonce();
  const Nanos asked = m.clock.now();
  ASSERT_TRUE((*a)->hand_over("B", nonce));
  EXPECT_FALSE(adopt_lease(*m.dev, m.clock, m.uuid(), disk_slot(m), m.timings(), "B", nonce + 2, asked));
  EXPECT_FALSE(adopt_lease(*m.dev, m.clock, m.uuid(), disk_slot(m), m.timings(), "X", nonce, asked));
  m.clock.advance(m.timings().fail);
  auto late = adopt_lease(*m.dev, m.clock, m.uuid(), disk_slot(m), m.timings(), "B", nonce, asked);
  ASSERT_FALSE(late);
  EXPECT_NE(late.message().find("too late"), std::string::npos);
}

// A device whose next read stalls: the clock moves on by `stall` while it is in flight.
class StallingRead final : public Device {
public:
  StallingRead(Device& inner, ManualClock& clock) : inner_(inner), clock_(clock) {}
  uint64_t size() const override { return inner_.size(); }
  const std::string& name() const override { return inner_.name(); }
  Status read(uint64_t offset, std::span<uint8_t> buf) override {
    clock_.advance(std::exchange(stall_, Nanos(0)));
    return inner_.read(offset, buf);
  }
  Status write(uint64_t offset, std::span<const uint8_t> buf) override {
    ++writes_;
    return inner_.write(offset, buf);
  }
  Status zero(uint64_t offset, uint64_t len) override { return inner_.zero(offset, len); }
  void stall_next_read(Nanos d) { stall_ = d; }
  unsigned writes() const { return writes_; }

private:
  Device& inner_;
  ManualClock& clock_;
  Nanos stall_{0};
  unsigned writes_ = 0;
};

// release() and hand_over() read the record and then write it. A read that stalls past the
// holder's validity must not be followed by the write: by then another node may have claimed the
// record, and "free" or a new holder's name written over that claim would give the disk to a third.
TEST(BlockdevLeaseHandOver, AReadThatStallsPastValidityWritesNothing) {
  for (const bool hand_over : {false, true}) {
    MemVolume m;
    StallingRead dev(*m.dev, m.clock);
    auto a = acquire_lease(dev, m.clock, m.uuid(), disk_slot(m), m.timings(), "A");
    ASSERT_TRUE(a) << a.message();
    const unsigned writes = dev.writes();
    dev.stall_next_read(m.timings().fail);
    const Status s = hand_over ? (*a)->hand_over("B", new_lease_nonce()) : (*a)->release();
    EXPECT_EQ(dev.writes(), writes) << (hand_over ? "hand_over" : "release") << " wrote after a stalled read";
    EXPECT_FALSE((*a)->valid());
    if (hand_over) {
      EXPECT_FALSE(s) << "a hand-over that wrote nothing is not a hand-over";
    }
    auto r = m.vol->read_lease(disk_slot(m));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->rec.owner, "A") << "the record is left for `dead` to settle";
    EXPECT_TRUE(r->held());
  }
}

TEST(BlockdevLeaseHandOver, AnExpiredHolderCannotHandOver) {
  MemVolume m;
  auto a = m.vol->acquire(disk_slot(m), "A");
  ASSERT_TRUE(a);
  m.clock.advance(m.timings().fail);
  EXPECT_FALSE((*a)->hand_over("B", new_lease_nonce()));
  auto r = m.vol->read_lease(disk_slot(m));
  EXPECT_EQ(r->rec.owner, "A") << "nothing written";
}

}  // namespace
}  // namespace minihv::blockdev

namespace minihv::blockdev {
namespace {

// A contender that stalls between its claim and the read-back (a loaded host) finds its claim
// already past validity: it starts over, waits for its own stale claim to go quiet, and wins.
TEST(BlockdevLease, AStallBetweenClaimAndReadBackStartsOverInsteadOfFailing) {
  MemVolume m;
  const auto t = m.timings();
  LeaseAcquirer a(*m.dev, m.clock, m.uuid(), disk_slot(m), t, "A");
  bool stalled = false;
  const Nanos t0 = m.clock.now();
  while (!a.done()) {
    const LeaseAcquirer::Phase before = a.phase();
    const Nanos due = a.step();
    if (before == LeaseAcquirer::Phase::kWrite && a.phase() == LeaseAcquirer::Phase::kReadBack && !stalled) {
      m.clock.advance(t.fail + 1ms);  // the process is descheduled right after its claim
      stalled = true;
      continue;
    }
    if (m.clock.now() < due) m.clock.advance(due - m.clock.now());
  }
  ASSERT_TRUE(stalled);
  ASSERT_EQ(a.phase(), LeaseAcquirer::Phase::kWon) << a.status().message();
  EXPECT_GE(m.clock.now() - t0, Nanos(t.dead)) << "its stale claim must stand still for dead first";
  EXPECT_TRUE(a.take()->valid());
}

}  // namespace
}  // namespace minihv::blockdev

namespace minihv::blockdev {
namespace {

// After a loss the validity is revoked for good, yet the node still needs to know when another
// holder may take over: granted() keeps the latest validity ever given.
TEST(BlockdevLeaseValidity, ARevokeEndsWritesButKeepsWhatWasGranted) {
  ManualClock clock(Nanos(5'000'000'000));
  LeaseValidity v(clock);
  EXPECT_FALSE(v.may_write());
  v.extend_to(Nanos(5'800'000'000));
  v.extend_to(Nanos(5'600'000'000));  // never moves back
  EXPECT_TRUE(v.may_write());
  EXPECT_EQ(v.granted(), Nanos(5'800'000'000));
  v.revoke();
  EXPECT_FALSE(v.may_write());
  EXPECT_LT(v.until().count(), 0);
  EXPECT_EQ(v.granted(), Nanos(5'800'000'000));
  v.extend_to(Nanos(6'000'000'000));  // a renewal that landed after the revoke: not valid again,
  EXPECT_FALSE(v.may_write());        // but others count their `dead` from it
  EXPECT_EQ(v.granted(), Nanos(6'000'000'000));
}

}  // namespace
}  // namespace minihv::blockdev
