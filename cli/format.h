// cli/format.h — small text formats several subcommands print.
#pragma once

#include <cstdint>
#include <string>

namespace minihv::cli {

// "45s", "12m03s", "3h07m", "2d04h": two units at most, as ps's elapsed time reads.
std::string format_duration(uint64_t seconds);

}  // namespace minihv::cli
