#include "migrate/test_hooks.h"

#include "common/env.h"

namespace minihv::migrate {

std::optional<uint64_t> corrupt_pages_frame_from_env() { return env::positive(kCorruptFrameEnv); }

std::optional<uint64_t> hold_before_ack_ms_from_env() { return env::positive("MINIHV_MIGRATE_TEST_HOLD_BEFORE_ACK_MS"); }

bool refuse_commit_from_env() { return env::positive("MINIHV_MIGRATE_TEST_REFUSE_COMMIT").has_value(); }

bool drop_ack_from_env() { return env::positive("MINIHV_MIGRATE_TEST_DROP_ACK").has_value(); }

std::optional<uint64_t> witness_silent_ms_from_env() { return env::positive("MINIHV_MIGRATE_TEST_WITNESS_SILENT_MS"); }

std::optional<std::string> host_cpu_profile_from_env() { return env::text(env::kTestHostCpuProfile); }

std::optional<std::string> out_of_order_from_env() { return env::text("MINIHV_MIGRATE_TEST_OUT_OF_ORDER"); }

}  // namespace minihv::migrate
