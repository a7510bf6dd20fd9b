// Logging to stderr: one line per call, prefixed by the level. Thread safe (one fprintf per line).
#pragma once

#include <cstdio>
#include <string>

#include <fmt/format.h>

namespace m1 {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
void set_log_level(LogLevel level);
LogLevel log_level();
void log_line(LogLevel level, const std::string& msg);

template <class... Args>
void log_info(fmt::format_string<Args...> f, Args&&... a) {
  if (log_level() <= LogLevel::kInfo) log_line(LogLevel::kInfo, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... a) {
  if (log_level() <= LogLevel::kWarn) log_line(LogLevel::kWarn, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_error(fmt::format_string<Args...> f, Args&&... a) {
  log_line(LogLevel::kError, fmt::format(f, std::forward<Args>(a)...));
}

}  // namespace m1
