// migrate/test_hooks.h — fault injection for integration tests. The one place the environment is read.
//
// MINIHV_MIGRATE_CORRUPT_FRAME=N (N >= 1): the sending Session flips one payload byte of the Nth PAGES
// frame it sends (counted over all streams, after sealing, so the checksum no longer matches). The
// receiver must detect it, abort, and the source must keep the VM running. Unset or invalid: no effect.
#pragma once

#include <cstdint>
#include <optional>

namespace minihv::migrate {

inline constexpr const char* kCorruptFrameEnv = "MINIHV_MIGRATE_CORRUPT_FRAME";

// The frame number from the environment (read once per call; the Session reads it when created).
std::optional<uint64_t> corrupt_pages_frame_from_env();

}  // namespace minihv::migrate
