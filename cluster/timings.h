// cluster/timings.h — every wait, timeout and period of a cluster node, named once.
// (Lease timings live on the volume, blockdev/volume.h; the migration defaults in migrate/migration.h.)
#pragma once

#include <chrono>

namespace minihv::cluster::timings {

using namespace std::chrono_literals;

// --- the node's loops (node.cc) ---
inline constexpr auto kTick = 100ms;       // read the configuration and leases, settle ends, place orphans
inline constexpr auto kFencePump = 10ms;   // push lease validity into every VM's fence
// Fenced: how long at least the node waits for its killed VMs to be gone, even when the time by
// which another node may take their disks over has passed (to tell a late end from none).
inline constexpr auto kConfirmAtLeast = 2s;

// --- the configuration's admin lease (config.cc) ---
inline constexpr auto kAdminLeaseWait = 20s;      // a writer waits this long for the admin lease
inline constexpr auto kAdminRetryBase = 20ms;     // losers of a race retry after this
inline constexpr int kAdminRetryJitterMs = 100;   // ... plus up to this much, at random

// --- taking a VM's leases (node_vm.cc) ---
inline constexpr auto kAcquireStep = 50ms;  // the longest between two steps of an acquisition
inline constexpr auto kAcquireNap = 20ms;   // the longest sleep between steps (cancel is seen)

// --- a VM's child process (node_vm.cc, vm_child.cc) ---
inline constexpr auto kStopAsk = 3s;          // the child's control socket answers "stop" within this
inline constexpr auto kStopGrace = 10s;       // then it is killed
// A guest without heartbeats counts as up after running this long (its control socket said "running").
inline constexpr auto kNoHeartbeatGrace = 3s;
inline constexpr auto kChildEventsConnect = 2s;   // the child's "events" stream answers within this
inline constexpr auto kChildEventsRetry = 10ms;   // until the child has bound its control socket

// --- configuration edits (node_edit.cc) ---
inline constexpr auto kCheckTimeout = 10s;        // a peer's check of a VM it may run
inline constexpr auto kCheckSettle = 5s;          // peers that just joined may still answer "joining"
inline constexpr auto kCheckRetryPause = 100ms;

// --- live moves (node_ops.cc) ---
inline constexpr auto kMoveTimeout = 15min;       // a move, end to end (forwarded, or `cluster vm move`)
inline constexpr auto kMigrateCallTimeout = 600s; // the source child's "migrate" request
inline constexpr auto kPrepareTimeout = 30s;      // the target starts its incoming child
inline constexpr auto kCancelTimeout = 10s;
inline constexpr auto kSourceExitWait = 10s;      // the source child ends after a move, or is killed
inline constexpr auto kHandOffCallTimeout = 5s;   // handoff_begin / handoff_done
inline constexpr auto kTargetStatusTimeout = 3s;  // the source polls the target's status
inline constexpr auto kTargetStatusPoll = 5ms;
// The target of a move takes the VM's leases (adopting a hand-over, or claiming them once their
// records stand still for `dead`); it refuses only a holder that keeps renewing this long.
inline constexpr auto kIncomingLeaseWait = 30s;
// The source waits this long for the target to report the VM running, counted from the last
// time the target said it is still taking the leases (a wait that restarts is never cut short).
inline constexpr auto kHandOffWait = 20s;
inline constexpr auto kIncomingListenWait = 15s;  // the incoming child says where it listens
inline constexpr auto kIncomingSourceWait = 15min;  // a source that never comes is given up
inline constexpr auto kHandOffSettle = 5s;  // the source hands over right after its process has gone

// --- requests between nodes and from the CLI (rpc.h) ---
inline constexpr auto kRpcIdle = 60s;          // a peer silent this long (no whole line) is dropped
inline constexpr auto kRpcWrite = 10s;         // a peer that takes in no reply this long is dropped
inline constexpr auto kRpcConnect = 3000ms;    // at most; a call's own timeout if shorter
inline constexpr auto kRpcCallTimeout = 10s;   // node_call's default longest silence

// --- status, validation (node_ops.cc) ---
inline constexpr auto kPeerStatusTimeout = 3s;
inline constexpr auto kPingTimeout = 2s;
inline constexpr auto kProbeTimeout = 20s;

// For the APIs that take a timeout in milliseconds (api_call).
template <class Rep, class Period>
constexpr int as_ms(std::chrono::duration<Rep, Period> d) {
  return static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

}  // namespace minihv::cluster::timings
