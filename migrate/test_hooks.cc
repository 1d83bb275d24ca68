#include "migrate/test_hooks.h"

#include <charconv>
#include <cstdlib>
#include <cstring>

namespace minihv::migrate {

namespace {
std::optional<uint64_t> positive_from_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(v, v + std::strlen(v), n);
  if (ec != std::errc() || *end != '\0' || n == 0) return std::nullopt;
  return n;
}
}  // namespace

std::optional<uint64_t> corrupt_pages_frame_from_env() { return positive_from_env(kCorruptFrameEnv); }

std::optional<uint64_t> hold_before_ack_ms_from_env() {
  return positive_from_env("MINIHV_MIGRATE_TEST_HOLD_BEFORE_ACK_MS");
}

bool refuse_commit_from_env() { return positive_from_env("MINIHV_MIGRATE_TEST_REFUSE_COMMIT").has_value(); }

bool drop_ack_from_env() { return positive_from_env("MINIHV_MIGRATE_TEST_DROP_ACK").has_value(); }

std::optional<uint64_t> witness_silent_ms_from_env() {
  return positive_from_env("MINIHV_MIGRATE_TEST_WITNESS_SILENT_MS");
}

std::optional<uint64_t> node_late_writes_ms_from_env() { return positive_from_env("MINIHV_TEST_NODE_LATE_WRITES_MS"); }

namespace {
std::optional<std::string> text_from_env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}
}  // namespace

std::optional<std::string> host_cpu_profile_from_env() { return text_from_env("MINIHV_TEST_HOST_CPU_PROFILE"); }

std::optional<std::string> out_of_order_from_env() { return text_from_env("MINIHV_MIGRATE_TEST_OUT_OF_ORDER"); }

}  // namespace minihv::migrate
