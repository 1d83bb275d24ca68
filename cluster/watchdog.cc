#include "cluster/watchdog.h"

#include <fcntl.h>
#include <linux/watchdog.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace minihv::cluster {

Result<std::unique_ptr<Watchdog>> Watchdog::arm(const std::string& path, std::chrono::seconds timeout) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::invalid_from_errno("--watchdog " + path);
  // From here the device is armed: every way out disarms it unless the node keeps it.
  std::unique_ptr<Watchdog> w(new Watchdog(std::move(fd), path, timeout));
  watchdog_info info{};
  if (::ioctl(w->fd_.get(), WDIOC_GETSUPPORT, &info) < 0) {
    const Status s = Status::invalid_from_errno("--watchdog " + path + ": not a watchdog device");
    w->disarm();
    return s;
  }
  if (!(info.options & WDIOF_MAGICCLOSE) || !(info.options & WDIOF_SETTIMEOUT)) {
    w->disarm();
    const char* id = reinterpret_cast<const char*>(info.identity);
    return Status::invalid("--watchdog " + path + ": " + std::string(id, ::strnlen(id, sizeof info.identity)) +
                           " cannot be disarmed or given a timeout: a clean stop of the node would reset the host");
  }
  int seconds = static_cast<int>(timeout.count());
  if (::ioctl(w->fd_.get(), WDIOC_SETTIMEOUT, &seconds) < 0 || seconds != timeout.count()) {
    const Status s = Status::invalid("--watchdog " + path + ": the device does not take a timeout of " +
                                     std::to_string(timeout.count()) + " s");
    w->disarm();
    return s;
  }
  w->pet();
  return w;
}

Watchdog::~Watchdog() = default;

void Watchdog::pet() {
  std::lock_guard lock(mu_);
  if (fd_.valid()) (void)::ioctl(fd_.get(), WDIOC_KEEPALIVE, 0);
}

void Watchdog::disarm() {
  std::lock_guard lock(mu_);
  if (!fd_.valid()) return;
  (void)!::write(fd_.get(), "V", 1);  // the magic character: the close that follows stops the device
  fd_.reset();
}

void Watchdog::abandon() {
  std::lock_guard lock(mu_);
  fd_.reset();
}

bool Watchdog::armed() const {
  std::lock_guard lock(mu_);
  return fd_.valid();
}

bool may_pet(blockdev::Nanos now, blockdev::Nanos until, const blockdev::LeaseTimings& t, std::chrono::seconds timeout) {
  return now + timeout <= until + (t.dead - t.fail) - t.io_timeout;
}

blockdev::Nanos pet_horizon(blockdev::Nanos node_lease_until, std::span<const blockdev::Nanos> live_vm_lease_grants) {
  blockdev::Nanos until = node_lease_until;
  for (blockdev::Nanos granted : live_vm_lease_grants) until = std::min(until, granted);
  return until;
}

Result<std::chrono::seconds> watchdog_timeout_for(const blockdev::LeaseTimings& t) {
  const auto room = t.dead - t.io_timeout;
  const auto whole = std::chrono::duration_cast<std::chrono::seconds>(room);
  if (whole.count() < 1)
    return Status::invalid("the volume's lease timings (dead " + std::to_string(t.dead.count()) + " ms, io-timeout " +
                           std::to_string(t.io_timeout.count()) +
                           " ms) leave no room for a watchdog: it must reset a host within dead - io-timeout, "
                           "and a watchdog counts whole seconds (format the volume with --dead-ms of 1100 or more)");
  return whole;
}

}  // namespace minihv::cluster
