#include "common/env.h"

#include <charconv>
#include <cstdlib>
#include <cstring>

namespace minihv::env {

std::optional<std::string> text(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

std::optional<uint64_t> positive(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(v, v + std::strlen(v), n);
  if (ec != std::errc() || *end != '\0' || n == 0) return std::nullopt;
  return n;
}

}  // namespace minihv::env
