// Two contenders for one lease over many random interleavings (fake clock, in-memory device):
// exactly one wins, and at no instant do two holders both believe they may write.
#include <gtest/gtest.h>

#include <random>

#include "blockdev/lease.h"
#include "tests/unit/blockdev_test_util.h"

namespace minihv::blockdev {
namespace {

using testing::MemVolume;
using namespace std::chrono_literals;

constexpr int kSeeds = 3000;

// One contender: an acquirer, then (if it wins) a holder renewing on schedule unless frozen.
struct Actor {
  std::unique_ptr<LeaseAcquirer> acq;
  std::unique_ptr<Lease> lease;
  Nanos due{0};
  bool refused = false, failed = false, lost = false;
  bool active() const { return !refused && !failed && !lost; }
};

// One formatted volume for every seed (formatting thousands would dominate the run time); each
// seed starts from a free slot.
MemVolume& shared_volume() {
  static MemVolume m;
  return m;
}

class Sim {
public:
  Sim(uint32_t seed, bool freezes) : m_(shared_volume()), rng_(seed), freezes_(freezes) {
    const LeaseSlot slot = *m_.vol->vm_slot(7, "disk race");
    Block free_rec;
    LeaseRecord{}.encode(free_rec, slot.offset, m_.uuid());
    EXPECT_TRUE(m_.dev->write(slot.offset, free_rec.span()));
    for (int i = 0; i < 2; ++i) {
      actors_[i].acq = std::make_unique<LeaseAcquirer>(*m_.dev, m_.clock, m_.uuid(), slot, m_.timings(),
                                                       i == 0 ? "A" : "B");
      // Both start within a few io-timeouts of each other: the interesting races.
      actors_[i].due = m_.clock.now() + jitter(3 * m_.timings().io_timeout);
    }
  }

  Nanos jitter(Nanos max) {
    return Nanos(std::uniform_int_distribution<int64_t>(0, max.count())(rng_));
  }

  // Runs until the simulated time passes `horizon`; checks the invariant at every event.
  void run(Nanos horizon) {
    const Nanos end = m_.clock.now() + horizon;
    while (m_.clock.now() < end) {
      int i = pick();
      if (i < 0) return;
      Actor& a = actors_[i];
      // Events happen at or after their due time: scheduling noise, sometimes much more.
      Nanos at = std::max(m_.clock.now(), a.due + jitter(m_.timings().io_timeout / 2));
      if (freezes_ && std::uniform_int_distribution<int>(0, 30)(rng_) == 0)
        at += jitter(3 * m_.timings().dead);  // SIGSTOP-like stall
      if (at > m_.clock.now()) m_.clock.advance(at - m_.clock.now());
      step(a);
      check_invariant();
      if (::testing::Test::HasFatalFailure()) return;
    }
  }

  int pick() {
    int best = -1;
    for (int i = 0; i < 2; ++i) {
      if (!actors_[i].active()) continue;
      // Mostly earliest-due first; with freezes, sometimes the other one jumps ahead.
      if (best < 0 || actors_[i].due < actors_[best].due ||
          (actors_[i].due == actors_[best].due && (rng_() & 1)))
        best = i;
    }
    return best;
  }

  void step(Actor& a) {
    if (a.acq) {
      a.due = a.acq->step();
      if (!a.acq->done()) return;
      switch (a.acq->phase()) {
        case LeaseAcquirer::Phase::kWon:
          a.lease = a.acq->take();
          ++wins_;
          a.due = m_.clock.now() + m_.timings().renew;
          break;
        case LeaseAcquirer::Phase::kRefused: a.refused = true; break;
        default: a.failed = true; break;
      }
      a.acq.reset();
      return;
    }
    const uint64_t writes = m_.dev->writes();
    const bool was_valid = a.lease->valid();
    Status s = a.lease->renew();
    if (!was_valid) {
      ASSERT_EQ(m_.dev->writes(), writes) << "an expired holder wrote";
    }
    if (a.lease->lost()) {
      a.lost = true;
    } else {
      ASSERT_TRUE(s) << s.message();
    }
    a.due = m_.clock.now() + m_.timings().renew;
  }

  void check_invariant() {
    int valid = 0;
    for (auto& a : actors_)
      if (a.lease && a.lease->valid()) ++valid;
    ASSERT_LE(valid, 1) << "two holders may write at once";
    if (valid == 1) {
      auto r = m_.vol->read_lease(*m_.vol->vm_slot(7, ""));
      ASSERT_TRUE(r && r->held()) << "a valid holder whose record is not held";
    }
  }

  int wins() const { return wins_; }
  const Actor& actor(int i) const { return actors_[i]; }

private:
  MemVolume& m_;
  std::mt19937 rng_;
  bool freezes_;
  Actor actors_[2];
  int wins_ = 0;
};

TEST(BlockdevContenders, ExactlyOneWinsOverManyInterleavings) {
  int a_wins = 0;
  for (int seed = 1; seed <= kSeeds; ++seed) {
    Sim sim(static_cast<uint32_t>(seed), /*freezes=*/false);
    sim.run(10s);
    ASSERT_FALSE(::testing::Test::HasFatalFailure()) << "seed " << seed;
    ASSERT_EQ(sim.wins(), 1) << "seed " << seed;
    const int winner = sim.actor(0).lease ? 0 : 1;
    EXPECT_TRUE(sim.actor(1 - winner).refused) << "seed " << seed << ": the loser must be refused";
    EXPECT_FALSE(sim.actor(winner).lost) << "seed " << seed << ": the winner keeps it while renewing";
    a_wins += winner == 0;
  }
  // Both orders of the race were explored.
  EXPECT_GT(a_wins, kSeeds / 10);
  EXPECT_LT(a_wins, kSeeds - kSeeds / 10);
}

TEST(BlockdevContenders, NeverTwoValidHoldersEvenWithStalls) {
  int takeovers = 0;
  for (int seed = 1; seed <= kSeeds; ++seed) {
    Sim sim(static_cast<uint32_t>(seed) * 7919u, /*freezes=*/true);
    sim.run(20s);
    ASSERT_FALSE(::testing::Test::HasFatalFailure()) << "seed " << seed;
    ASSERT_LE(sim.wins(), 2) << "seed " << seed;
    takeovers += sim.wins() == 2;
  }
  EXPECT_GT(takeovers, 0) << "stalls never led to a takeover: the test explores too little";
}

}  // namespace
}  // namespace minihv::blockdev
