// vmm/devices/tap.h — a Linux tap interface opened for a virtio-net device.
//
// Owns: opening /dev/net/tun as IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with the 12-byte virtio 1.x
// header, which offloads the tap can take, switching them, bringing the tap up and onto a bridge.
// Must not know: virtio queues or guest memory (the device reads and writes frames on fd()).
#pragma once

#include <cstdint>
#include <string>

#include "common/fd.h"
#include "common/status.h"

namespace minihv {

class Tap {
public:
  // Attaches to the tap `name`, or creates it (not persistent: it goes when minihv exits) and
  // brings it up. With `bridge`, the tap is made a port of that bridge (which must exist) and
  // brought up. The fd is non-blocking. Errors name the tap or bridge and say what to check.
  static Result<Tap> open(const std::string& name, const std::string& bridge = "");

  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  bool created() const { return created_; }
  // The tap takes partial checksums and TSO/ECN from us (tap -> guest direction offloads).
  bool offloads_available() const { return offloads_available_; }
  // False once the interface was deleted under us: the fd is detached and every use fails.
  bool attached() const;
  // Turns the tap's offloads (TUN_F_*) on or off to match what the driver negotiated.
  Status set_offloads(bool csum, bool tso4, bool tso6, bool ecn);

private:
  Tap() = default;
  UniqueFd fd_;
  std::string name_;
  bool created_ = false;
  bool offloads_available_ = false;
};

}  // namespace minihv
