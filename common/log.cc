#include "common/log.h"

#include <atomic>
#include <cstdio>

namespace minihv {

namespace {
std::atomic<LogLevel> g_level{LogLevel::kWarn};
const char* prefix(LogLevel l) {
  switch (l) {
    case LogLevel::kError: return "error: ";
    case LogLevel::kWarn: return "warning: ";
    case LogLevel::kInfo: return "";
    case LogLevel::kDebug: return "debug: ";
  }
  return "";
}
}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }

void log(LogLevel level, const char* fmt, ...) {
  if (level > g_level.load()) return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  // One write per line so lines from several threads never interleave.
  std::fprintf(stderr, "minihv: %s%s\n", prefix(level), buf);
}

}  // namespace minihv
