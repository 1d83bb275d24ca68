// cluster/watchdog.h — the host's watchdog device, used as sanlock's wdmd uses it.
//
// Owns: arming a watchdog device (`node --watchdog /dev/watchdog`; the softdog module gives one
// anywhere) with a timeout shorter than the volume's `dead`, petting it, and disarming it (the magic
// close) only when that is safe. The node pets it while its lease on the volume is current; a node
// that stops petting — frozen, hung, crashed, or fenced with a VM it cannot prove gone — is reset by
// the device before another node may take over what it held, so no write of its VMs still in the
// kernel can land after a takeover.
// Must not know: leases, VMs (the node decides when to pet and when to disarm).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "blockdev/clock.h"
#include "blockdev/layout.h"
#include "common/fd.h"
#include "common/status.h"

namespace minihv::cluster {

class Watchdog {
public:
  // Opens (and so arms) the device and sets its timeout. Refused when the driver cannot be disarmed
  // (no magic close, or nowayout): a clean node stop would reset the host.
  static Result<std::unique_ptr<Watchdog>> arm(const std::string& path, std::chrono::seconds timeout);
  ~Watchdog();  // closes: still armed unless disarm() ran, so the host resets after the timeout
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Any thread. After disarm() or abandon(), pet() does nothing and armed() is false.
  void pet();
  void disarm();   // the magic close: the device stops
  void abandon();  // a plain close: the device goes on, and resets the host after the timeout
  bool armed() const;
  std::chrono::seconds timeout() const { return timeout_; }
  const std::string& path() const { return path_; }

private:
  Watchdog(UniqueFd fd, std::string path, std::chrono::seconds timeout)
      : fd_(std::move(fd)), path_(std::move(path)), timeout_(timeout) {}
  mutable std::mutex mu_;
  UniqueFd fd_;
  std::string path_;
  std::chrono::seconds timeout_;
};

// The watchdog timeout for a volume's lease timings: whole seconds, at least 1, such that a node
// that petted it last at a renewal is reset before `dead` has passed since that renewal (with the
// lease I/O timeout to spare). Refused for timings too short for any: `dead` under 1 s + io-timeout.
Result<std::chrono::seconds> watchdog_timeout_for(const blockdev::LeaseTimings& t);

// Whether a node whose lease is valid until `until` may pet a watchdog of `timeout` now: only if,
// were this the last pet, the reset would still come before another node may take over (`dead`
// after the renewal that set `until`, less the lease I/O timeout). Renewals that stall stop the
// petting well before the lease's own `fail`.
bool may_pet(blockdev::Nanos now, blockdev::Nanos until, const blockdev::LeaseTimings& t, std::chrono::seconds timeout);

// The `until` a node's pets are judged by: the earliest of its node lease's validity and the
// validity last granted to each lease of a VM whose process is not gone. A VM's lease can lapse
// while the node lease renews (its own renewal stalled past `fail`), and another node may take that
// disk over `dead` after it: a write of that VM still in the kernel must not outlive this host.
blockdev::Nanos pet_horizon(blockdev::Nanos node_lease_until, std::span<const blockdev::Nanos> live_vm_lease_grants);

}  // namespace minihv::cluster
