// common/units.h — sizes as users type them ("512M", "1G", "4096") and as we print them.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace minihv {

// "<n>[.<decimals>][K|M|G|T][i][B]" in binary units, case-insensitive ("1.5G" is 1536 MiB). A bare
// number is in `bare_unit` bytes (1 for byte counts, 1 MiB for --mem, as QEMU's -m). Overflow,
// junk and a fraction of a byte ("1.3K") are errors.
Result<uint64_t> parse_size(const std::string& text, uint64_t bare_unit = 1);
// "1.5 GiB", "512 MiB", "4 KiB", "17 B".
std::string format_size(uint64_t bytes);

}  // namespace minihv
