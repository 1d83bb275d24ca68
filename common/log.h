// common/log.h — one-line diagnostics on stderr, prefixed "minihv: ".
#pragma once

#include <cstdarg>
#include <string>

namespace minihv {

enum class LogLevel { kError, kWarn, kInfo, kDebug };

void set_log_level(LogLevel level);
LogLevel log_level();
void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_ERROR(...) ::minihv::log(::minihv::LogLevel::kError, __VA_ARGS__)
#define LOG_WARN(...) ::minihv::log(::minihv::LogLevel::kWarn, __VA_ARGS__)
#define LOG_INFO(...) ::minihv::log(::minihv::LogLevel::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) ::minihv::log(::minihv::LogLevel::kDebug, __VA_ARGS__)

}  // namespace minihv
