// blockdev/lease_keeper.h — keeps a held lease alive: renews it every `renew` on one thread and
// watches its validity on another, so a renewal stuck in I/O still ends the holder at `fail`.
//
// `on_lost(reason)` runs once, on a keeper thread, when the lease is lost (taken over, damaged,
// or not renewed for `fail`); the data path has already stopped writing by then (the validity is
// checked before every write). `on_renewed(took, ok)`, when given, runs on the renewing thread after
// every renewal attempt with the time its I/O took (a node's lease latency metric); it must not block.
// Destroying the keeper releases the lease.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "blockdev/lease.h"

namespace minihv::blockdev {

class LeaseKeeper {
public:
  using LostFn = std::function<void(const std::string& reason)>;
  using RenewedFn = std::function<void(Nanos took, bool ok)>;
  LeaseKeeper(std::unique_ptr<Lease> lease, LostFn on_lost, RenewedFn on_renewed = {});
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Stops renewing and releases the lease (call after every write of the holder has completed).
  Status release();
  // Stops renewing and hands the lease over (Lease::hand_over); no on_lost afterwards.
  Status hand_over(const std::string& owner, uint64_t nonce);
  // Stops renewing and abandons the lease (Lease::abandon): nothing is written; no on_lost.
  void abandon();
  std::shared_ptr<const LeaseValidity> validity() const { return lease_->validity(); }
  const Lease& lease() const { return *lease_; }
  uint64_t renewals() const { return renewals_.load(); }

private:
  void renew_loop();
  void watch_loop();
  bool wait_stop(Nanos d);  // true when asked to stop
  void report(const std::string& reason);
  void stop_threads();

  std::unique_ptr<Lease> lease_;
  LostFn on_lost_;
  RenewedFn on_renewed_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<bool> reported_{false};
  std::atomic<uint64_t> renewals_{0};
  std::thread renewer_, watchdog_;
};

}  // namespace minihv::blockdev
