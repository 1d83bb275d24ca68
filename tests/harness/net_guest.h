// tests/harness/net_guest.h — the test guest's `net` workload on a GuestLan, and the scenario of a
// TCP conversation that goes on while the guest moves between hosts (integration: 2 moves; slow: 20).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/harness/echo_probe.h"
#include "tests/harness/guest_lan.h"
#include "tests/harness/harness.h"

namespace minihv::test {

inline constexpr int kEchoPort = 7;
inline constexpr std::chrono::microseconds kEchoPeriod{1000};  // the probe's message rate
inline constexpr std::chrono::seconds kGuestUp{30};            // boot + the first answer on PVM
inline const std::string kGuestMac = "52:54:00:6d:68:01";

// `minihv run` of the test guest's net workload (guest address 0) in host `h` of `lan`, on `tap`.
std::unique_ptr<VmProcess> net_guest(const GuestLan& lan, unsigned h, const std::string& tap, const std::string& api,
                                     std::vector<std::string> more = {});
// An echo probe from the hub to the guest (a test failure when it cannot connect).
// The probe's period on this host: kEchoPeriod, stretched. In the hw lane the test guest runs under
// QEMU TCG beside another L1, and a message per ms outruns its 64 TX buffers: it drops up to 7 % of
// UDP echoes (a TCP echo it sends again), while minihv's NIC drops none.
std::chrono::microseconds echo_period();
std::unique_ptr<EchoProbe> echo_probe(const GuestLan& lan, EchoProbe::Kind kind);
// The `stats` of NIC i of the VM at `api` (empty when there is none).
nlohmann::json nic_stats(const std::string& api, size_t i = 0);
// No reset, no wrong byte, no error.
void expect_clean(const EchoReport& r, const char* what);

// The guest moves host 0 -> 1 -> 0 ... `moves` times while a client sends a numbered message every
// millisecond over one TCP connection and UDP: no reset, every TCP byte back in order. `gaps_ms`
// gets the largest echo gap of each move (also printed). Fails the test (gtest) when one goes wrong.
// `queues` > 1: the NIC has that many queue pairs, on multi-queue taps "vtq" (made here on both
// hosts); else on "vt0" (host 0's made by the caller).
void migrate_back_and_forth(GuestLan& lan, TempDir& dir, int moves, std::vector<long>& gaps_ms, unsigned queues = 1);

}  // namespace minihv::test
