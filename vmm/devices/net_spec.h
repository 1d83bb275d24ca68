// vmm/devices/net_spec.h — what `--net` says: the tap, the MAC and the queue pairs of one NIC.
//
// Owns: the text of a NIC specification (`tap=NAME[,mac=MAC][,queues=N]`), MAC address text, and a
// fresh locally administered MAC for a NIC given none.
// Must not know: tap devices or virtio (it only parses and checks).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"

namespace minihv {

using MacAddress = std::array<uint8_t, 6>;

// "52:54:00:12:34:56" (case-insensitive hex, ':' or '-'); refuses multicast addresses (a NIC's own
// address must be unicast) and all zeros.
Result<MacAddress> parse_mac(const std::string& text);
std::string format_mac(const MacAddress& mac);
// A random unicast, locally administered address (02:xx:xx:xx:xx:xx), from the kernel's RNG.
MacAddress random_mac();

struct NicSpec {
  static constexpr unsigned kMaxQueuePairs = 1;  // multi-queue is not implemented (docs/vmm.md)
  std::string tap;
  std::optional<MacAddress> mac;  // none: random_mac() at start; a migration keeps the source's
  unsigned queues = 1;
};

// Linux interface names: 1..15 bytes, no '/', ':', whitespace, and not "." or "..".
bool valid_interface_name(const std::string& name);
// Parses one `--net` value; the error names the bad part ("mac=zz: not a MAC address ...").
Result<NicSpec> parse_nic_spec(const std::string& text);

}  // namespace minihv
