// common/env.h — reading the environment the same way everywhere: a variable that is unset or empty
// is absent, a number that does not parse is absent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace minihv::env {

// A test pretends to be another processor: the JSON CPU profile a node offers and a migration's
// destination compares with (migrate/test_hooks.h, cluster/test_hooks.h).
inline constexpr const char* kTestHostCpuProfile = "MINIHV_TEST_HOST_CPU_PROFILE";

// The variable's value when set and not empty.
std::optional<std::string> text(const char* name);
// The variable as a whole number >= 1 (decimal, nothing after it).
std::optional<uint64_t> positive(const char* name);

}  // namespace minihv::env
