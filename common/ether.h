// common/ether.h — Ethernet names every module may check: MAC addresses and interface names.
//
// Owns: MAC address text (parse, format), a fresh locally administered MAC, and what Linux accepts
// as an interface name. Must not know: taps, bridges, virtio (vmm/devices/ and cluster/ use these).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace minihv {

using MacAddress = std::array<uint8_t, 6>;

// "52:54:00:12:34:56" (case-insensitive hex, ':' or '-'); refuses multicast addresses (a NIC's own
// address must be unicast) and all zeros. Errors start "mac=TEXT: ".
Result<MacAddress> parse_mac(const std::string& text);
std::string format_mac(const MacAddress& mac);
// A random unicast, locally administered address (02:xx:xx:xx:xx:xx), from the kernel's RNG.
MacAddress random_mac();

// Linux interface names: 1..15 bytes, printable, no '/', ':', whitespace, and not "." or "..".
bool valid_interface_name(const std::string& name);

}  // namespace minihv
