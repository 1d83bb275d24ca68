#include "cluster/vm_phase.h"

namespace minihv::cluster {

namespace {

using Action = Decision::Action;
using Kind = VmEvent::Kind;

Decision act(Action a, std::optional<VmPhase> next = std::nullopt, bool record_failure = false) {
  return {a, next, record_failure};
}

// The child ended. Only a running (or stopping) VM's end is the node's to settle here: an incoming
// or migrating one belongs to the move that watches it.
Decision on_ended(const VmFacts& f, int status, const DecideConfig& c) {
  if (f.phase != VmPhase::kRunning && f.phase != VmPhase::kStopping) return act(Action::kNothing);
  // Not ours to run any more: the cluster places it again once its leases have been quiet.
  if (f.leases_lost) return act(Action::kHandBack);
  if (f.phase != VmPhase::kRunning || !f.wanted) return act(Action::kRelease);
  if (status == 0) return act(Action::kPowerOff);
  if (f.restarts < c.max_restarts) return act(Action::kRestart, std::nullopt, true);
  return act(Action::kGiveUp, std::nullopt, true);
}

}  // namespace

std::string_view to_string(VmPhase p) {
  switch (p) {
    case VmPhase::kStarting: return "starting";
    case VmPhase::kIncoming: return "incoming";
    case VmPhase::kRunning: return "running";
    case VmPhase::kMigrating: return "migrating";
    case VmPhase::kStopping: return "stopping";
  }
  return "unknown";
}

Decision decide(const VmFacts& f, const VmEvent& e, const DecideConfig& c) {
  switch (e.kind) {
    case Kind::kTick:
      if (f.phase == VmPhase::kRunning && f.child_alive && !f.wanted)
        return act(Action::kStop, VmPhase::kStopping);
      return act(Action::kNothing);
    case Kind::kStarted:
      return act(Action::kNothing, VmPhase::kRunning);
    case Kind::kStartFailed:  // a restart's failure was recorded when the child ended
      return act(Action::kRelease, std::nullopt, f.restarts == 0);
    case Kind::kEnded:
      return on_ended(f, e.exit_status, c);
    case Kind::kLeaseLost:  // the fence has closed already; the VM must not outlive its lease either
      return act(Action::kKill);
    case Kind::kArrived:
      return act(Action::kNothing, VmPhase::kRunning);
    case Kind::kMigratedAway:
      return act(Action::kHandOver);
    case Kind::kMigrationFailed:
      if (f.phase == VmPhase::kMigrating) return act(Action::kNothing, VmPhase::kRunning);
      return act(Action::kNothing);
  }
  return act(Action::kNothing);
}

}  // namespace minihv::cluster
