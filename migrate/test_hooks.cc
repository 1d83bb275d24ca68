#include "migrate/test_hooks.h"

#include <charconv>
#include <cstdlib>
#include <cstring>

namespace minihv::migrate {

std::optional<uint64_t> corrupt_pages_frame_from_env() {
  const char* v = std::getenv(kCorruptFrameEnv);
  if (!v || !*v) return std::nullopt;
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(v, v + std::strlen(v), n);
  if (ec != std::errc() || *end != '\0' || n == 0) return std::nullopt;
  return n;
}

}  // namespace minihv::migrate
