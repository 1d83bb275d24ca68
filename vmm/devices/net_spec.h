// vmm/devices/net_spec.h — what `--net` says: the tap, the MAC and the queue pairs of one NIC.
//
// Owns: the text of a NIC specification (`tap=NAME[,mac=MAC][,bridge=NAME][,queues=N]`).
// Must not know: tap devices or virtio (it only parses and checks; MACs are common/ether.h's).
#pragma once

#include <optional>
#include <string>

#include "common/ether.h"
#include "common/status.h"

namespace minihv {

struct NicSpec {
  static constexpr unsigned kMaxQueuePairs = 1;  // multi-queue is not implemented (docs/vmm.md)
  std::string tap;
  std::optional<MacAddress> mac;  // none: random_mac() at start; a migration keeps the source's
  std::string bridge;             // non-empty: the tap is put on this bridge (it must exist)
  unsigned queues = 1;
};

// Parses one `--net` value; the error names the bad part ("mac=zz: not a MAC address ...").
Result<NicSpec> parse_nic_spec(const std::string& text);

}  // namespace minihv
