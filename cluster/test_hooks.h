// cluster/test_hooks.h — fault injection for a node's integration tests. The one place cluster/
// reads the environment for a test; read only at the hook points in node.cc.
//
// MINIHV_TEST_NODE_LATE_WRITES_MS=N: a `minihv node` makes every write to the volume through its
// writable handle (its lease renewals among them) N ms late, from a child process that outlives a
// kill -9 of the node (blockdev/file_device.h), so the write lands after the node died.
//
// MINIHV_TEST_HOST_CPU_PROFILE=FILE (common/env.h): the node offers the cluster this JSON CPU
// profile instead of this host's (a test pretends to be an older processor).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace minihv::cluster {

std::optional<uint64_t> node_late_writes_ms_from_env();
std::optional<std::string> host_cpu_profile_from_env();

}  // namespace minihv::cluster
