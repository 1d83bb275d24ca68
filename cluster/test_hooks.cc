#include "cluster/test_hooks.h"

#include "common/env.h"

namespace minihv::cluster {

std::optional<uint64_t> node_late_writes_ms_from_env() { return env::positive("MINIHV_TEST_NODE_LATE_WRITES_MS"); }

std::optional<std::string> host_cpu_profile_from_env() { return env::text(env::kTestHostCpuProfile); }

}  // namespace minihv::cluster
