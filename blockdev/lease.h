// blockdev/lease.h — delta leases on the shared volume, after sanlock's design (Chockler & Malkhi,
// "light-weight leases"): a lease is one 4 KiB record that its holder rewrites every `renew`.
//
// Nobody compares clocks. A contender reads the record and, if it is held, watches it with its own
// monotonic clock: a holder that changes it is alive (refused); one that leaves it unchanged for
// `dead` is dead (taken over). To take a free or dead lease the contender writes its claim within
// `write_window` of the read that saw it free, waits `acquire_delay`, and reads it back: it holds
// the lease only if its claim is still there. Of two contenders exactly one wins (docs/volume-format.md
// has the argument). A holder whose last successful renewal started more than `fail` ago stops
// every write of its own — before `dead`, when others may take over — and the data path asks the
// lease (LeaseValidity::may_write) before every write it submits.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "blockdev/clock.h"
#include "blockdev/layout.h"
#include "blockdev/lease_record.h"

namespace minihv::blockdev {

// Where a lease lives and what it guards.
struct LeaseSlot {
  uint64_t offset = 0;
  std::string resource;
};

// Until when the holder may write, on the monotonic clock; shared with the data path (the
// virtio-blk backend), which checks it before every write submission.
class LeaseValidity {
public:
  explicit LeaseValidity(Clock& clock) : clock_(clock) {}
  bool may_write() const { return clock_.now().count() < until_ns_.load(std::memory_order_acquire); }
  Nanos until() const { return Nanos(until_ns_.load(std::memory_order_acquire)); }
  void extend_to(Nanos t);  // never moves back, and never undoes a revoke
  // The latest validity ever granted, revoked or not: after a loss, what tells when another holder
  // may take over (`dead` - `fail` after it).
  Nanos granted() const { return Nanos(granted_ns_.load(std::memory_order_acquire)); }
  // For good: a renewal that completes after this (its write was in flight) does not revive it.
  void revoke() { until_ns_.store(kRevoked, std::memory_order_release); }
  Clock& clock() const { return clock_; }

private:
  static constexpr int64_t kRevoked = INT64_MIN;
  Clock& clock_;
  std::atomic<int64_t> until_ns_{0};
  std::atomic<int64_t> granted_ns_{0};
};

// A lease this process holds.
class Lease {
public:
  Lease(Device& dev, Clock& clock, const Uuid& uuid, LeaseSlot slot, LeaseTimings t, LeaseRecord mine,
        Nanos valid_until);
  ~Lease();  // releases the lease if still held (errors are logged)
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // One renewal: read, check it is still ours, write counter+1. An I/O error is returned and the
  // lease stays (it may still be renewed before `fail`); a record that is no longer ours, or an
  // expired lease, makes it lost for good.
  Status renew();
  // Stops writes at once, then marks the record free if it is still ours and still valid.
  Status release();
  // Hands the lease to another process without a gap (a live migration's destination): stops
  // writes at once, then rewrites the still-valid record as held by `owner` with the `nonce` that
  // process chose (generation+1). That process adopts it (adopt_lease); no contender can come in
  // between, since the record never stops being held by someone alive.
  Status hand_over(const std::string& owner, uint64_t nonce);
  // Stops writes at once and never touches the record again (a fenced holder: the others take
  // over once it stands still for `dead`; a late write of ours must not land after they do).
  void abandon();

  bool valid() const { return validity_->may_write(); }
  bool lost() const { return lost_.load(); }
  std::string lost_reason() const;
  std::shared_ptr<const LeaseValidity> validity() const { return validity_; }
  const LeaseSlot& slot() const { return slot_; }
  const LeaseTimings& timings() const { return t_; }
  LeaseRecord record() const;

private:
  Status lose(std::string why);

  Device& dev_;
  Clock& clock_;
  Uuid uuid_;
  LeaseSlot slot_;
  LeaseTimings t_;
  std::shared_ptr<LeaseValidity> validity_;
  mutable std::mutex mu_;
  LeaseRecord mine_;
  std::atomic<bool> lost_{false};
  std::string lost_why_;
};

struct AcquireOptions {
  // false: refuse as soon as the holder is seen alive. true: keep watching until the record has
  // stood still for `dead` after its last change; refuse only a holder that has kept changing it
  // for `max_wait` (0 = the dead timeout plus a few renewals), counted from the first change seen.
  // A dead holder's late write (one in flight when it died) restarts the `dead` watch but does not
  // end the wait: a live holder keeps renewing and exceeds `max_wait`; a dead one exceeds it only
  // if it was seen renewing for nearly all of `max_wait` before it died (then it is refused, which
  // costs a retry, never safety).
  bool wait_for_live_holder = false;
  Nanos max_wait{0};
  // What this process already saw in the slot and since when (its own clock; e.g. a cluster node
  // that reads every lease continuously). If the first read still shows exactly these bytes, the
  // watch counts from `prior_since`, so a holder dead that long is taken over at once.
  std::shared_ptr<const Block> prior_bytes;
  Nanos prior_since{0};
};

// One attempt to take a lease, as explicit steps so tests can interleave contenders at will.
// Each step() does at most one read or one write and returns when the next step is due.
class LeaseAcquirer {
public:
  enum class Phase { kRead, kWatch, kWrite, kReadBack, kWon, kRefused, kFailed };

  LeaseAcquirer(Device& dev, Clock& clock, const Uuid& uuid, LeaseSlot slot, LeaseTimings t,
                std::string owner, AcquireOptions opts = {});
  Nanos step();
  bool done() const { return phase_ == Phase::kWon || phase_ == Phase::kRefused || phase_ == Phase::kFailed; }
  Phase phase() const { return phase_; }
  // kRefused: Status::invalid naming the holder; kFailed: the error.
  const Status& status() const { return status_; }
  // After kWon: the held lease (once).
  std::unique_ptr<Lease> take();

private:
  Nanos do_read(Nanos now);
  Nanos do_watch(Nanos now);
  Nanos do_write(Nanos now);
  Nanos do_read_back(Nanos now);
  Nanos watch_from(const LeaseRead& r, Nanos now);
  Nanos fail(Status s);
  Nanos refuse(const LeaseRead& r, const std::string& how);

  Device& dev_;
  Clock& clock_;
  Uuid uuid_;
  LeaseSlot slot_;
  LeaseTimings t_;
  std::string owner_;
  AcquireOptions opts_;
  Phase phase_ = Phase::kRead;
  Status status_;
  // When the watched record first changed: a holder still changing it `max_wait` later is alive.
  std::optional<Nanos> first_change_;
  // What the last read showed: the record we will supersede and when we read it.
  LeaseRecord seen_;
  bool seen_ok_ = false;
  Nanos read_at_{0};
  // Watching a held (or unreadable) record: its bytes and since when they have not changed.
  Block observed_;
  Nanos observed_since_{0};
  // Our claim.
  LeaseRecord mine_;
  Nanos write_start_{0};
  unsigned attempts_ = 0;
  std::unique_ptr<Lease> won_;
};

// Runs a LeaseAcquirer to the end, sleeping on `clock` between steps.
Result<std::unique_ptr<Lease>> acquire_lease(Device& dev, Clock& clock, const Uuid& uuid, LeaseSlot slot,
                                             LeaseTimings t, const std::string& owner,
                                             AcquireOptions opts = {});

// Takes a lease another holder handed over (Lease::hand_over) to `owner` with `nonce`. `asked_at` is
// this process's clock when it gave the holder the nonce: the hand-over write landed after it, so
// nobody calls the lease dead before asked_at + dead, and it is valid until asked_at + fail. Refused
// when the record does not carry our nonce, or when that validity has already run out.
Result<std::unique_ptr<Lease>> adopt_lease(Device& dev, Clock& clock, const Uuid& uuid, LeaseSlot slot,
                                           LeaseTimings t, const std::string& owner, uint64_t nonce,
                                           Nanos asked_at);
// A nonce for a hand-over (random, never 0).
uint64_t new_lease_nonce();

// "host/pid 1234": who this process is, in lease records.
std::string default_owner();
// "held by X (since 12:03:04, renewed 150 ms ago)" from a record, for messages.
std::string describe_holder(const LeaseRecord& r, int64_t now_unix_ms);

}  // namespace minihv::blockdev
