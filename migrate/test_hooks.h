// migrate/test_hooks.h — fault injection for integration tests. The one place the environment is read.
//
// MINIHV_MIGRATE_CORRUPT_FRAME=N (N >= 1): the sending Session flips one payload byte of the Nth PAGES
// frame it sends (counted over all streams, after sealing, so the checksum no longer matches). The
// receiver must detect it, abort, and the source must keep the VM running. Unset or invalid: no effect.
//
// MINIHV_MIGRATE_TEST_HOLD_BEFORE_ACK_MS=N: the destination, once it holds the whole machine state,
// says "holding the ACK" on stderr and waits N ms before acknowledging (so a test can kill it in
// the middle of a switchover).
//
// MINIHV_MIGRATE_TEST_DROP_ACK=1: the destination takes COMMIT, does not send the ACK and closes the
// session as if the ACK were lost on the way, then runs the VM (the source must not resume).
//
// MINIHV_MIGRATE_TEST_REFUSE_COMMIT=1: the destination answers COMMIT with ABORT (as one whose last
// frames did not decode would); the source must resume the VM (an ABORT is proof).
//
// MINIHV_MIGRATE_TEST_WITNESS_SILENT_MS=N: the destination's witness (in_doubt.h) answers no QUERY
// for N ms after the switchover, as if the network were cut and then healed.
//
// MINIHV_MIGRATE_TEST_OUT_OF_ORDER=CASE: the source sends one frame the destination must refuse —
// pages-before-hello-reply (on the last stream, before HELLO_REPLY came), second-hello, commit-before-state, state-during-rounds (after HELLO), round-repeated (after the
// full pass), pages-after-final-round (after the final round end) — and otherwise goes on. The
// destination must end with a protocol error and the source must keep the VM running.
//
// MINIHV_TEST_HOST_CPU_PROFILE=FILE: the destination compares the incoming VM's CPU profile with
// this JSON profile instead of this host's CPUID (a test pretends to be an older processor).
//
// Read only at the hook points in migrate/ (a node's own hooks are cluster/test_hooks.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace minihv::migrate {

inline constexpr const char* kCorruptFrameEnv = "MINIHV_MIGRATE_CORRUPT_FRAME";

// The frame number from the environment (read once per call; the Session reads it when created).
std::optional<uint64_t> corrupt_pages_frame_from_env();
std::optional<uint64_t> hold_before_ack_ms_from_env();
bool drop_ack_from_env();
bool refuse_commit_from_env();
std::optional<uint64_t> witness_silent_ms_from_env();
std::optional<std::string> host_cpu_profile_from_env();
std::optional<std::string> out_of_order_from_env();

}  // namespace minihv::migrate
