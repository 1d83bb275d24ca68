// vmm/devices/tap.h — a Linux tap interface opened for a virtio-net device.
//
// Owns: opening /dev/net/tun as IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with the 12-byte virtio 1.x
// header (once per queue, with IFF_MULTI_QUEUE, for more than one queue), which offloads the tap
// can take, switching them, which queues the kernel spreads frames over, bringing the tap up and
// onto a bridge.
// Must not know: virtio queues or guest memory (the device reads and writes frames on fd()).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/status.h"

namespace minihv {

// The tun/tap control device every tap is opened through (a VM run as --vm-user needs it rw).
inline constexpr const char* kTunDevice = "/dev/net/tun";

// For a process that may not make taps (a node's VM run as --vm-user, cluster/vm_user.h): the tap
// `name` made persistent and owned by uid/gid, put on `bridge` and brought up, so that process can
// attach to it with Tap::open, which finds it on its bridge and up and changes nothing. Made again
// (an existing tap of that name), it is given to uid/gid again. remove_persistent_tap() deletes it.
Status make_tap_for(const std::string& name, const std::string& bridge, uid_t uid, gid_t gid);
Status remove_persistent_tap(const std::string& name);

class Tap {
public:
  // Attaches to the tap `name`, or creates it (not persistent: it goes when minihv exits) and
  // brings it up. With `bridge`, the tap is made a port of that bridge (which must exist) and
  // brought up. The fd is non-blocking. Errors name the tap or bridge and say what to check.
  // With `queues` > 1 the tap is opened that many times with IFF_MULTI_QUEUE (an existing tap
  // must have been made multi_queue) and only queue 0 is enabled (enable_queues()).
  static Result<Tap> open(const std::string& name, const std::string& bridge = "", unsigned queues = 1);

  // Queue q's fd (queue 0 is the tap of a single-queue device).
  int fd(unsigned q = 0) const { return fds_[q].get(); }
  unsigned queues() const { return static_cast<unsigned>(fds_.size()); }
  // Enables queues [0, n) and disables the rest: the kernel hands frames only to enabled queues,
  // so a queue the guest does not use holds none. Not thread-safe: one caller at a time.
  Status enable_queues(unsigned n);
  const std::string& name() const { return name_; }
  bool created() const { return created_; }
  // The tap takes partial checksums and TSO/ECN from us (tap -> guest direction offloads).
  bool offloads_available() const { return offloads_available_; }
  // False once the interface was deleted under us: the fd is detached and every use fails.
  bool attached() const;
  // Turns the tap's offloads (TUN_F_*) on or off, on every queue, to match what the driver
  // negotiated.
  Status set_offloads(bool csum, bool tso4, bool tso6, bool ecn);

private:
  Tap() = default;
  Status set_queue(unsigned q, short flag, const char* what);
  std::vector<UniqueFd> fds_;
  unsigned enabled_ = 0;  // queues [0, enabled_) are attached
  std::string name_;
  bool created_ = false;
  bool offloads_available_ = false;
};

}  // namespace minihv
