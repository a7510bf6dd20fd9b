#include "base/log.h"

#include <atomic>

namespace m1 {
namespace {
std::atomic<int> g_level{int(LogLevel::kInfo)};
}
void set_log_level(LogLevel level) { g_level = int(level); }
LogLevel log_level() { return LogLevel(g_level.load()); }
void log_line(LogLevel level, const std::string& msg) {
  static const char* kNames[] = {"debug", "info", "warn", "error"};
  std::fprintf(stderr, "[m1 %s] %s\n", kNames[int(level)], msg.c_str());
}
}  // namespace m1
