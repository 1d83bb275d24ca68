// vmm/devices/net_announce.h — telling the network where a guest's MAC lives now.
//
// Owns: the self-announce frame (a RARP request from the guest's MAC, as QEMU and Cloud Hypervisor
// send after a live migration, so switches and bridges learn the new port at once) and the
// schedule of its rounds.
// Must not know: taps, virtio, or when a migration happened.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include "common/ether.h"

namespace minihv {

constexpr size_t kRarpFrameSize = 60;  // Ethernet minimum without the FCS: 14 + 28, padded
// QEMU's schedule: a round at once, then after 50 ms, and each next gap 100 ms longer (capped), 5
// rounds in all — enough for a bridge that dropped the first frame while it learned the port.
constexpr unsigned kAnnounceRounds = 5;
constexpr std::chrono::milliseconds kAnnounceFirstGap{50};
constexpr std::chrono::milliseconds kAnnounceGapStep{100};
constexpr std::chrono::milliseconds kAnnounceMaxGap{550};

// The gap before round `round` + 1 (round 0 is sent at once).
std::chrono::milliseconds announce_gap(unsigned round);
// Broadcast RARP "request reverse" (RFC 903) with `mac` as sender and target hardware address.
std::array<uint8_t, kRarpFrameSize> rarp_frame(const MacAddress& mac);

}  // namespace minihv
