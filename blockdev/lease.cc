#include "blockdev/lease.h"

#include <time.h>
#include <unistd.h>

#include <cstring>

#include "common/log.h"

namespace minihv::blockdev {

namespace {
// A contender that keeps missing its write window (a stalled device) gives up after this many tries.
constexpr unsigned kMaxAttempts = 5;

std::string clock_time(int64_t unix_ms) {
  const time_t t = static_cast<time_t>(unix_ms / 1000);
  tm tmv{};
  localtime_r(&t, &tmv);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tmv);
  return buf;
}
}  // namespace

void LeaseValidity::extend_to(Nanos t) {
  int64_t granted = granted_ns_.load();
  while (granted < t.count() && !granted_ns_.compare_exchange_weak(granted, t.count())) {
  }
  int64_t cur = until_ns_.load();
  while (cur != kRevoked && cur < t.count() && !until_ns_.compare_exchange_weak(cur, t.count())) {
  }
}

std::string default_owner() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::string h(host);
  if (h.size() > 40) h.resize(40);
  return h + "/pid " + std::to_string(getpid());
}

std::string describe_holder(const LeaseRecord& r, int64_t now_unix_ms) {
  std::string s = "held by " + (r.owner.empty() ? std::string("an unnamed holder") : r.owner);
  if (r.acquired_unix_ms <= 0) return s;
  s += " (since " + clock_time(r.acquired_unix_ms);
  const int64_t ago = now_unix_ms - r.renewed_unix_ms;
  if (ago >= 0 && r.renewed_unix_ms > 0) s += ", renewed " + std::to_string(ago) + " ms ago";
  return s + ")";
}

// ---- Lease -------------------------------------------------------------------------------------

Lease::Lease(Device& dev, Clock& clock, const Uuid& uuid, LeaseSlot slot, LeaseTimings t, LeaseRecord mine,
             Nanos valid_until)
    : dev_(dev), clock_(clock), uuid_(uuid), slot_(std::move(slot)), t_(t),
      validity_(std::make_shared<LeaseValidity>(clock)), mine_(std::move(mine)) {
  validity_->extend_to(valid_until);
}

Lease::~Lease() {
  if (Status s = release(); !s) LOG_WARN("%s", s.message().c_str());
}

std::string Lease::lost_reason() const {
  std::lock_guard lock(mu_);
  return lost_why_;
}

LeaseRecord Lease::record() const {
  std::lock_guard lock(mu_);
  return mine_;
}

Status Lease::lose(std::string why) {
  validity_->revoke();
  if (!lost_.exchange(true)) lost_why_ = why;
  return Status::error("lease on " + slot_.resource + " lost: " + lost_why_);
}

Status Lease::renew() {
  std::lock_guard lock(mu_);
  if (lost_) return Status::error("lease on " + slot_.resource + " lost: " + lost_why_);
  const Nanos t0 = clock_.now();
  if (!validity_->may_write())
    return lose("not renewed for " + std::to_string(t_.fail.count()) + " ms (fail timeout)");
  auto r = read_lease(dev_, uuid_, slot_.offset);
  if (!r) return r.status().context("renewing the lease on " + slot_.resource);
  if (!r->ok()) return lose(std::string("its record is ") + to_string(r->check));
  if (r->rec.nonce != mine_.nonce || r->rec.state != LeaseState::kHeld)
    return lose(r->held() ? "taken over: " + describe_holder(r->rec, clock_.wall_unix_ms()) : "released by someone else");
  LeaseRecord next = mine_;
  next.counter = mine_.counter + 1;
  next.renewed_unix_ms = clock_.wall_unix_ms();
  Block b;
  next.encode(b, slot_.offset, uuid_);
  // The write below must not be submitted by a holder that stopped being valid meanwhile (frozen).
  if (!validity_->may_write())
    return lose("not renewed for " + std::to_string(t_.fail.count()) + " ms (fail timeout)");
  MINIHV_TRY(dev_.write(slot_.offset, b.span()).context("renewing the lease on " + slot_.resource));
  mine_ = next;
  // Others saw this write no earlier than t0, so none will call us dead before t0 + dead.
  validity_->extend_to(t0 + t_.fail);
  return Status::ok();
}

Status Lease::release() {
  std::lock_guard lock(mu_);
  const Nanos until = validity_->until();
  const bool was_valid = validity_->may_write();
  validity_->revoke();  // first: the data path stops writing before the record says "free"
  if (lost_ || !was_valid) return Status::ok();  // not ours to free: others take over after `dead`
  auto r = read_lease(dev_, uuid_, slot_.offset);
  if (!r) return r.status().context("releasing the lease on " + slot_.resource);
  if (!r->ok() || r->rec.nonce != mine_.nonce || r->rec.state != LeaseState::kHeld) return Status::ok();
  // The read may have stalled past our validity, and then someone may have claimed the record
  // since: writing "free" over their claim would hand the disk to a third. Others take it after `dead`.
  if (clock_.now() >= until) return lose("the read before the release took past the fail timeout");
  LeaseRecord freed = mine_;
  freed.state = LeaseState::kFree;
  freed.counter = mine_.counter + 1;
  freed.renewed_unix_ms = clock_.wall_unix_ms();
  Block b;
  freed.encode(b, slot_.offset, uuid_);
  MINIHV_TRY(dev_.write(slot_.offset, b.span()).context("releasing the lease on " + slot_.resource));
  mine_ = freed;
  lost_ = true;
  lost_why_ = "released";
  return Status::ok();
}

void Lease::abandon() {
  validity_->revoke();  // before the lock, which a renewal holds over its I/O: it writes no more after this
  std::lock_guard lock(mu_);
  if (!lost_) lost_why_ = "abandoned";
  lost_ = true;
}

Status Lease::hand_over(const std::string& owner, uint64_t nonce) {
  std::lock_guard lock(mu_);
  if (lost_) return Status::error("lease on " + slot_.resource + " lost: " + lost_why_);
  const Nanos until = validity_->until();
  const bool was_valid = validity_->may_write();
  validity_->revoke();  // first: nothing of ours is written once the record names the new holder
  if (!was_valid) return lose("not renewed for " + std::to_string(t_.fail.count()) + " ms (fail timeout)");
  auto r = read_lease(dev_, uuid_, slot_.offset);
  if (!r) return r.status().context("handing over the lease on " + slot_.resource);
  if (!r->ok() || r->rec.nonce != mine_.nonce || r->rec.state != LeaseState::kHeld)
    return lose("taken over before the hand-over");
  // Again after the read, which may have stalled: past our validity the record may be someone
  // else's by the time our write lands.
  if (clock_.now() >= until) return lose("the read before the hand-over took past the fail timeout");
  LeaseRecord next = mine_;
  next.generation = mine_.generation + 1;
  next.nonce = nonce;
  next.counter = mine_.counter + 1;
  next.owner = owner;
  next.acquired_unix_ms = next.renewed_unix_ms = clock_.wall_unix_ms();
  Block b;
  next.encode(b, slot_.offset, uuid_);
  // Still inside our validity (checked just above, after the read): the record stays alive.
  MINIHV_TRY(dev_.write(slot_.offset, b.span()).context("handing over the lease on " + slot_.resource));
  mine_ = next;
  lost_ = true;
  lost_why_ = "handed over to " + owner;
  return Status::ok();
}

Result<std::unique_ptr<Lease>> adopt_lease(Device& dev, Clock& clock, const Uuid& uuid, LeaseSlot slot,
                                           LeaseTimings t, const std::string& owner, uint64_t nonce,
                                           Nanos asked_at) {
  auto r = read_lease(dev, uuid, slot.offset);
  if (!r) return r.status().context("adopting the lease on " + slot.resource);
  if (!r->held() || r->rec.nonce != nonce || r->rec.owner != owner)
    return Status::error(slot.resource + ": the lease was not handed over to " + owner);
  const Nanos valid_until = asked_at + t.fail;
  if (clock.now() >= valid_until)
    return Status::error(slot.resource + ": the hand-over came too late to be used; taking the lease over instead");
  return std::make_unique<Lease>(dev, clock, uuid, std::move(slot), t, r->rec, valid_until);
}

uint64_t new_lease_nonce() { return random_u64() | 1; }

// ---- LeaseAcquirer -----------------------------------------------------------------------------

LeaseAcquirer::LeaseAcquirer(Device& dev, Clock& clock, const Uuid& uuid, LeaseSlot slot, LeaseTimings t,
                             std::string owner, AcquireOptions opts)
    : dev_(dev), clock_(clock), uuid_(uuid), slot_(std::move(slot)), t_(t), owner_(std::move(owner)),
      opts_(opts) {
  if (opts_.max_wait.count() == 0) opts_.max_wait = t_.dead + 4 * t_.renew;
  mine_.nonce = random_u64() | 1;  // never 0, the nonce of a never-held record
}

Nanos LeaseAcquirer::step() {
  const Nanos now = clock_.now();
  switch (phase_) {
    case Phase::kRead: return do_read(now);
    case Phase::kWatch: return do_watch(now);
    case Phase::kWrite: return do_write(now);
    case Phase::kReadBack: return do_read_back(now);
    default: return now;
  }
}

Nanos LeaseAcquirer::fail(Status s) {
  phase_ = Phase::kFailed;
  status_ = std::move(s);
  return clock_.now();
}

Nanos LeaseAcquirer::refuse(const LeaseRead& r, const std::string& how) {
  phase_ = Phase::kRefused;
  const std::string who = r.held() ? describe_holder(r.rec, clock_.wall_unix_ms())
                                   : std::string("its record is ") + to_string(r.check);
  status_ = Status::invalid(slot_.resource + ": " + how + ": " + who);
  return clock_.now();
}

Nanos LeaseAcquirer::watch_from(const LeaseRead& r, Nanos now) {
  observed_ = r.raw;
  observed_since_ = now;
  seen_ok_ = r.ok();
  if (r.ok()) seen_ = r.rec;
  phase_ = Phase::kWatch;
  return now + t_.poll();
}

Nanos LeaseAcquirer::do_read(Nanos now) {
  if (++attempts_ > kMaxAttempts)
    return fail(Status::error(slot_.resource + ": could not claim the lease in time (storage too slow?)"));
  auto r = read_lease(dev_, uuid_, slot_.offset);
  if (!r) return fail(r.status().context("reading the lease on " + slot_.resource));
  if (r->check == RecordCheck::kNewer)
    return fail(Status::error(slot_.resource + ": lease record written by a newer minihv"));
  if (r->ok() && r->rec.state == LeaseState::kFree) {
    seen_ = r->rec;
    seen_ok_ = true;
    read_at_ = now;
    phase_ = Phase::kWrite;
    return now;
  }
  // Held, or unreadable (torn, foreign): nobody is trusted until it has stood still for `dead`.
  const Nanos next = watch_from(*r, now);
  if (opts_.prior_bytes && opts_.prior_since <= now &&
      std::memcmp(r->raw.bytes, opts_.prior_bytes->bytes, kBlockSize) == 0) {
    observed_since_ = opts_.prior_since;  // unchanged since we first saw it: the watch goes on from there
    if (now - observed_since_ >= t_.dead) {
      read_at_ = now;
      phase_ = Phase::kWrite;
      return now;
    }
  }
  return next;
}

Nanos LeaseAcquirer::do_watch(Nanos now) {
  auto r = read_lease(dev_, uuid_, slot_.offset);
  if (!r) return fail(r.status().context("reading the lease on " + slot_.resource));
  if (std::memcmp(r->raw.bytes, observed_.bytes, kBlockSize) == 0) {
    if (now - observed_since_ >= t_.dead) {  // unchanged for `dead`: its holder is gone
      read_at_ = now;
      phase_ = Phase::kWrite;
      return now;
    }
    return now + t_.poll();  // still settling: the watch ends by `dead` after the last change
  }
  if (r->ok() && r->rec.state == LeaseState::kFree) {  // released while we watched
    seen_ = r->rec;
    seen_ok_ = true;
    read_at_ = now;
    phase_ = Phase::kWrite;
    return now;
  }
  if (r->held() && !opts_.wait_for_live_holder) return refuse(*r, "in use");
  if (!first_change_) first_change_ = now;
  if (now - *first_change_ >= opts_.max_wait) return refuse(*r, "still held after waiting (its holder kept renewing)");
  return watch_from(*r, now);
}

Nanos LeaseAcquirer::do_write(Nanos now) {
  if (now - read_at_ > t_.write_window()) {  // too slow since the read: what we saw may be stale
    phase_ = Phase::kRead;
    return now;
  }
  mine_.state = LeaseState::kHeld;
  mine_.generation = (seen_ok_ ? seen_.generation : 0) + 1;
  mine_.counter = (seen_ok_ ? seen_.counter : 0) + 1;
  mine_.acquired_unix_ms = mine_.renewed_unix_ms = clock_.wall_unix_ms();
  mine_.owner = owner_;
  mine_.resource = slot_.resource;
  Block b;
  mine_.encode(b, slot_.offset, uuid_);
  write_start_ = now;
  if (Status s = dev_.write(slot_.offset, b.span()); !s) return fail(s.context("claiming the lease on " + slot_.resource));
  const Nanos landed = clock_.now();
  if (landed - read_at_ > t_.write_window()) {
    // The claim may have landed after another contender's read-back: it must not count. Start
    // over; our own record is now watched like anyone else's.
    phase_ = Phase::kRead;
    return landed;
  }
  phase_ = Phase::kReadBack;
  return write_start_ + t_.acquire_delay();
}

Nanos LeaseAcquirer::do_read_back(Nanos now) {
  auto r = read_lease(dev_, uuid_, slot_.offset);
  if (!r) return fail(r.status().context("reading back the lease on " + slot_.resource));
  if (!r->held() || r->rec.nonce != mine_.nonce) return refuse(*r, "lost the race for it");
  const Nanos valid_until = write_start_ + t_.fail;
  if (now >= valid_until) {
    // We stalled (a loaded host): the claim is ours but already past its validity. Start over; our
    // own record is watched like anyone else's until it has stood still for `dead`.
    phase_ = Phase::kRead;
    return now;
  }
  phase_ = Phase::kWon;
  won_ = std::make_unique<Lease>(dev_, clock_, uuid_, slot_, t_, mine_, valid_until);
  return now;
}

std::unique_ptr<Lease> LeaseAcquirer::take() { return std::move(won_); }

Result<std::unique_ptr<Lease>> acquire_lease(Device& dev, Clock& clock, const Uuid& uuid, LeaseSlot slot,
                                             LeaseTimings t, const std::string& owner, AcquireOptions opts) {
  LeaseAcquirer a(dev, clock, uuid, std::move(slot), t, owner, opts);
  while (!a.done()) {
    const Nanos due = a.step();
    if (!a.done()) clock.sleep_for(due - clock.now());
  }
  if (a.phase() != LeaseAcquirer::Phase::kWon) return a.status();
  return a.take();
}

}  // namespace minihv::blockdev
