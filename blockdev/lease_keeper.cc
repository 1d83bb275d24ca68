#include "blockdev/lease_keeper.h"

#include <latch>

#include "blockdev/lease_priority.h"

#include "common/log.h"

namespace minihv::blockdev {

LeaseKeeper::LeaseKeeper(std::unique_ptr<Lease> lease, LostFn on_lost, RenewedFn on_renewed)
    : lease_(std::move(lease)), on_lost_(std::move(on_lost)), on_renewed_(std::move(on_renewed)) {
  // Each thread raises its own priority first, and the keeper is not handed out before both have:
  // a VMM turns its sandbox on once set up, and then may not change a thread's scheduling.
  std::latch raised(2);
  renewer_ = std::thread([this, &raised] {
    use_lease_priority();  // renewals go ahead of the guests' vCPUs and I/O (lease_priority.h)
    raised.count_down();
    renew_loop();
  });
  watchdog_ = std::thread([this, &raised] {
    use_lease_priority();
    raised.count_down();
    watch_loop();
  });
  raised.wait();
}

LeaseKeeper::~LeaseKeeper() {
  if (Status s = release(); !s) LOG_WARN("%s", s.message().c_str());
}

void LeaseKeeper::stop_threads() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (renewer_.joinable()) renewer_.join();
  if (watchdog_.joinable()) watchdog_.join();
}

Status LeaseKeeper::release() {
  stop_threads();
  return lease_->release();
}

Status LeaseKeeper::hand_over(const std::string& owner, uint64_t nonce) {
  stop_threads();
  return lease_->hand_over(owner, nonce);
}

// Abandoned before the threads are joined: a renewal in flight may take as long as its I/O, and
// must not write again after this returns (nor report the lease lost when its validity goes).
void LeaseKeeper::abandon() {
  reported_ = true;   // no on_lost from here on
  lease_->abandon();  // revokes at once; then waits for a renewal in flight to finish its write
  stop_threads();
}

bool LeaseKeeper::wait_stop(Nanos d) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, d, [this] { return stop_; });
}

void LeaseKeeper::report(const std::string& reason) {
  if (reported_.exchange(true)) return;
  LOG_ERROR("lease on %s lost: %s", lease_->slot().resource.c_str(), reason.c_str());
  if (on_lost_) on_lost_(reason);
}

void LeaseKeeper::renew_loop() {
  const Nanos period = lease_->timings().renew;
  Clock& clock = lease_->validity()->clock();
  while (!wait_stop(period)) {
    const Nanos t0 = clock.now();
    Status s = lease_->renew();
    const Nanos took = clock.now() - t0;
    if (on_renewed_) on_renewed_(took, bool(s));
    if (took > lease_->timings().io_timeout)  // slow storage eats into the fail margin: say so
      LOG_WARN("lease on %s: renewal took %lld ms (io timeout %lld ms)", lease_->slot().resource.c_str(),
               static_cast<long long>(took.count() / 1'000'000), static_cast<long long>(lease_->timings().io_timeout.count()));
    if (s) {
      ++renewals_;
      continue;
    }
    if (lease_->lost()) return report(lease_->lost_reason());
    LOG_WARN("%s (retrying)", s.message().c_str());  // I/O error: the next renewal may still make it
  }
}

void LeaseKeeper::watch_loop() {
  // Often enough that a lost lease ends the holder well inside the dead-fail margin.
  const Nanos period = lease_->timings().io_timeout / 2;
  while (!wait_stop(period)) {
    if (!lease_->valid()) {
      return report(lease_->lost() ? lease_->lost_reason()
                                   : "not renewed for " + std::to_string(lease_->timings().fail.count()) +
                                         " ms (fail timeout): storage unreachable or this process was stalled");
    }
  }
}

}  // namespace minihv::blockdev
