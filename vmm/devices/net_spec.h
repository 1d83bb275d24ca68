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
  // A tap takes up to 256 queues; 8 pairs is one per vCPU of the guests we run, and each pair is
  // a thread of ours (docs/vmm.md).
  static constexpr unsigned kMaxQueuePairs = 8;
  std::string tap;
  std::optional<MacAddress> mac;  // none: random_mac() at start; a migration keeps the source's
  std::string bridge;             // non-empty: the tap is put on this bridge (it must exist)
  unsigned queues = 1;  // queue pairs, 1 to kMaxQueuePairs
};

// Parses one `--net` value; the error names the bad part ("mac=zz: not a MAC address ...").
Result<NicSpec> parse_nic_spec(const std::string& text);

}  // namespace minihv
