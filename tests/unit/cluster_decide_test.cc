// What a node decides about one of its VMs (cluster/vm_phase.h), fed synthetic facts and events:
// no process, no lease, no volume.
#include <gtest/gtest.h>

#include <string>

#include "cluster/vm_phase.h"

namespace minihv::cluster {
namespace {

using Action = Decision::Action;
using Kind = VmEvent::Kind;

VmFacts facts(VmPhase phase, bool wanted = true, bool child_alive = true, bool leases_lost = false,
              unsigned restarts = 0) {
  return {phase, wanted, child_alive, leases_lost, restarts};
}

TEST(VmPhase, StatusTextIsWhatStatusAndMetricsAlwaysShowed) {
  EXPECT_EQ(to_string(VmPhase::kStarting), "starting");
  EXPECT_EQ(to_string(VmPhase::kIncoming), "incoming");
  EXPECT_EQ(to_string(VmPhase::kRunning), "running");
  EXPECT_EQ(to_string(VmPhase::kMigrating), "migrating");
  EXPECT_EQ(to_string(VmPhase::kStopping), "stopping");
}

// One row: a phase and facts, an event, and what the node must do.
struct Row {
  const char* what;
  VmFacts facts;
  VmEvent event;
  Action action;
  std::optional<VmPhase> next;
  bool record_failure;
};

class Decide : public ::testing::TestWithParam<Row> {};

TEST_P(Decide, Row) {
  const Row& r = GetParam();
  const Decision d = decide(r.facts, r.event);
  EXPECT_EQ(d.action, r.action) << r.what;
  EXPECT_EQ(d.next_phase, r.next) << r.what;
  EXPECT_EQ(d.record_failure, r.record_failure) << r.what;
}

constexpr auto kR = VmPhase::kRunning, kS = VmPhase::kStopping, kM = VmPhase::kMigrating, kI = VmPhase::kIncoming,
               kSt = VmPhase::kStarting;
const VmEvent kTickEv{Kind::kTick}, kLost{Kind::kLeaseLost}, kStarted{Kind::kStarted},
    kStartFailed{Kind::kStartFailed}, kArrived{Kind::kArrived}, kAway{Kind::kMigratedAway},
    kMoveFailed{Kind::kMigrationFailed};

INSTANTIATE_TEST_SUITE_P(
    EveryPhaseAndEvent, Decide,
    ::testing::Values(
        // The tick: a running VM the configuration no longer wants is asked to stop; nothing else.
        Row{"running, wanted", facts(kR), kTickEv, Action::kNothing, std::nullopt, false},
        Row{"running, unwanted", facts(kR, false), kTickEv, Action::kStop, kS, false},
        Row{"running, unwanted, already reaped", facts(kR, false, false), kTickEv, Action::kNothing, std::nullopt,
            false},
        Row{"stopping, unwanted", facts(kS, false), kTickEv, Action::kNothing, std::nullopt, false},
        Row{"migrating, unwanted", facts(kM, false), kTickEv, Action::kNothing, std::nullopt, false},
        Row{"incoming, unwanted", facts(kI, false), kTickEv, Action::kNothing, std::nullopt, false},
        Row{"starting, unwanted", facts(kSt, false, false), kTickEv, Action::kNothing, std::nullopt, false},
        // Ends of a running VM: guest power-off, crash, signal, restart limit.
        Row{"guest powered off", facts(kR), VmEvent::ended(0), Action::kPowerOff, std::nullopt, false},
        Row{"crash, first", facts(kR), VmEvent::ended(1), Action::kRestart, std::nullopt, true},
        Row{"killed by a signal", facts(kR, true, false, false, 1), VmEvent::ended(128 + 9), Action::kRestart,
            std::nullopt, true},
        Row{"crash, last restart", facts(kR, true, false, false, kMaxRestarts - 1), VmEvent::ended(2),
            Action::kRestart, std::nullopt, true},
        Row{"crash, restart limit reached", facts(kR, true, false, false, kMaxRestarts), VmEvent::ended(2),
            Action::kGiveUp, std::nullopt, true},
        Row{"power-off after restarts", facts(kR, true, false, false, kMaxRestarts), VmEvent::ended(0),
            Action::kPowerOff, std::nullopt, false},
        // Ends that are not a failure of the VM.
        Row{"ended with its leases lost", facts(kR, true, false, true), VmEvent::ended(137), Action::kHandBack,
            std::nullopt, false},
        Row{"stopping VM lost its leases", facts(kS, false, false, true), VmEvent::ended(0), Action::kHandBack,
            std::nullopt, false},
        Row{"stopped as asked", facts(kS, false, false), VmEvent::ended(0), Action::kRelease, std::nullopt, false},
        Row{"stopped, crashed on the way", facts(kS, false, false), VmEvent::ended(1), Action::kRelease,
            std::nullopt, false},
        Row{"ended while unwanted", facts(kR, false, false), VmEvent::ended(1), Action::kRelease, std::nullopt,
            false},
        Row{"ended while migrating", facts(kM, true, false), VmEvent::ended(0), Action::kNothing, std::nullopt,
            false},
        Row{"ended while incoming", facts(kI, true, false), VmEvent::ended(1), Action::kNothing, std::nullopt,
            false},
        // Lease loss: the child dies at once, whatever it does.
        Row{"lease lost, running", facts(kR), kLost, Action::kKill, std::nullopt, false},
        Row{"lease lost, migrating", facts(kM), kLost, Action::kKill, std::nullopt, false},
        Row{"lease lost, stopping", facts(kS, false), kLost, Action::kKill, std::nullopt, false},
        // Starts and arrivals.
        Row{"started", facts(kSt), kStarted, Action::kNothing, kR, false},
        Row{"cannot start", facts(kSt, true, false), kStartFailed, Action::kRelease, std::nullopt, true},
        Row{"restart failed", facts(kR, true, false, false, 1), kStartFailed, Action::kRelease, std::nullopt, false},
        Row{"arrived", facts(kI), kArrived, Action::kNothing, kR, false},
        // Live moves.
        Row{"migrated away", facts(kM, true, false), kAway, Action::kHandOver, std::nullopt, false},
        Row{"move failed", facts(kM), kMoveFailed, Action::kNothing, kR, false},
        Row{"move failed, stopped meanwhile", facts(kS, false), kMoveFailed, Action::kNothing, std::nullopt,
            false}));

TEST(Decide, RestartLimitComesFromTheConfig) {
  DecideConfig none{0};
  EXPECT_EQ(decide(facts(kR), VmEvent::ended(1), none).action, Action::kGiveUp);
  DecideConfig many{10};
  EXPECT_EQ(decide(facts(kR, true, false, false, 9), VmEvent::ended(1), many).action, Action::kRestart);
}

TEST(Decide, WhatEachActionLetsGoOf) {
  EXPECT_TRUE(decide(facts(kR), VmEvent::ended(0)).turns_off());
  EXPECT_TRUE(decide(facts(kR, true, false, false, kMaxRestarts), VmEvent::ended(1)).turns_off());
  EXPECT_FALSE(decide(facts(kR, true, false, true), VmEvent::ended(1)).turns_off());
  EXPECT_TRUE(decide(facts(kR, true, false, true), VmEvent::ended(1)).lets_go());
  EXPECT_TRUE(decide(facts(kS, false, false), VmEvent::ended(0)).lets_go());
  EXPECT_FALSE(decide(facts(kR), VmEvent::ended(1)).lets_go());  // restarted: still ours
  EXPECT_FALSE(decide(facts(kR), kLost).lets_go());               // killed: its end settles it
}

}  // namespace
}  // namespace minihv::cluster
