// migrate/verify.h — whole-memory xxh3 digests for --verify.
//
// Owns: cutting RAM into ranges and hashing them; comparing a peer's digests with local memory.
// Must not know: frames or sockets (VERIFY payloads carry these RangeDigests, see frames.h).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "migrate/frames.h"
#include "vmm/memory.h"

namespace minihv::migrate {

// Ranges this long localise a mismatch without making VERIFY frames big (1 GiB = 16 ranges).
inline constexpr uint64_t kVerifyRangeBytes = 64ull << 20;

// Digests of every RAM region cut into ranges of at most `range_bytes` (a multiple of 4 KiB).
std::vector<RangeDigest> digest_ram(std::span<const MemoryRegion> ram, uint64_t range_bytes = kVerifyRangeBytes);
// The ranges of `expected` whose digest of local memory differs (with the local digest). A range
// outside local RAM is an error, not a mismatch.
Result<std::vector<RangeDigest>> compare_ram(std::span<const MemoryRegion> ram,
                                             std::span<const RangeDigest> expected);

}  // namespace minihv::migrate
