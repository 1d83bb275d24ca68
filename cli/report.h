// cli/report.h — how every `minihv` subcommand reports a failure (docs/cli.md "Conventions").
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/json_text.h"
#include "common/status.h"

namespace minihv::cli {

// "minihv: error: MESSAGE" on stderr and, for a command run with --json, {"ok":false,"error":...}
// on stdout too (a script reads one object either way). Returns the exit status: 2 for bad input.
inline int fail(const Status& s, bool json = false) {
  std::fprintf(stderr, "minihv: error: %s\n", s.message().c_str());
  if (json) std::printf("%s\n", json_text({{"ok", false}, {"error", s.message()}}).c_str());
  return s.is_invalid_input() ? kExitUsage : kExitFailure;
}

}  // namespace minihv::cli
