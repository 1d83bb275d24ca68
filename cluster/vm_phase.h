// cluster/vm_phase.h — the life of one VM on a node, and what the node does when something happens
// to it: a pure function of (phase, facts, event, config) that unit tests drive like vcpu's
// handle_exit (tests/unit/cluster_decide_test.cc). The Node gathers the facts, calls decide() and
// carries the Decision out; nothing here touches a process, a lease or the volume.
//
//   starting ──started──▶ running ──(move)──▶ migrating ──migrated away──▶ (handed over, forgotten)
//      │                   │  ▲                   │
//      │ start failed      │  └──migration failed─┘
//      ▼                   ├──not wanted any more──▶ stopping ──ended──▶ (released, forgotten)
//   (released, forgotten)  └──ended──▶ restart here | power off | give up | hand back
//   incoming ──arrived (leases taken)──▶ running
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace minihv::cluster {

enum class VmPhase {
  kStarting,   // taking its leases; no child yet
  kIncoming,   // a child waits for a live migration; the leases follow it
  kRunning,    // the child runs with the leases
  kMigrating,  // the child migrates out (Node::move_local)
  kStopping,   // asked to stop: not wanted by the configuration any more
};

inline constexpr std::array<VmPhase, 5> kVmPhases = {VmPhase::kStarting, VmPhase::kIncoming, VmPhase::kRunning,
                                                     VmPhase::kMigrating, VmPhase::kStopping};

// The text in `status --json` ("local"[].state) and the metrics' state label.
std::string_view to_string(VmPhase p);

// A VM ends its run on a node at most this many times and is restarted there; then it is given up.
inline constexpr unsigned kMaxRestarts = 3;

// What the node knows about the VM when the event comes.
struct VmFacts {
  VmPhase phase = VmPhase::kStarting;
  bool wanted = false;       // the configuration has it and says it runs
  bool child_alive = false;  // its process has not been reaped
  bool leases_lost = false;  // one of its leases is lost or may not be written any more
  unsigned restarts = 0;     // restarts on this node so far
};

struct VmEvent {
  enum class Kind {
    kTick,             // the node's periodic look
    kStarted,          // the first child runs (start_vm)
    kStartFailed,      // no child could be started (start or restart)
    kEnded,            // the child was reaped
    kLeaseLost,        // a lease keeper gave up one of its leases
    kArrived,          // an incoming VM holds its leases
    kMigratedAway,     // the VM runs on the target now
    kMigrationFailed,  // the move failed; the VM still runs here
  };
  Kind kind = Kind::kTick;
  int exit_status = 0;  // kEnded: 0 = the guest powered off; else its status, or 128 + the signal

  static VmEvent ended(int status) { return {Kind::kEnded, status}; }
};

struct DecideConfig {
  unsigned max_restarts = kMaxRestarts;
};

struct Decision {
  enum class Action {
    kNothing,
    kStop,      // ask the child to stop (stop_child), the phase becomes stopping
    kKill,      // SIGKILL the child now: it must not outlive its lease
    kRestart,   // spawn the child again here
    kPowerOff,  // the guest powered off: it stays off (configuration), leases released
    kGiveUp,    // it keeps failing here: it stays off, the error is shown, leases released
    kRelease,   // give its leases back and forget it
    kHandBack,  // its leases were lost: forget it; the cluster places it again
    kHandOver,  // it migrated away: hand the leases to the target and forget it
  };
  Action action = Action::kNothing;
  std::optional<VmPhase> next_phase;  // the phase to set, if it changes
  bool record_failure = false;        // keep the failure in the configuration (status shows it)

  // The configuration should say it stays off until started again.
  bool turns_off() const { return action == Action::kPowerOff || action == Action::kGiveUp; }
  // Its leases go back (released or handed over) and the node forgets it.
  bool lets_go() const {
    return turns_off() || action == Action::kRelease || action == Action::kHandBack || action == Action::kHandOver;
  }
};

Decision decide(const VmFacts& facts, const VmEvent& event, const DecideConfig& config = {});

}  // namespace minihv::cluster
