// An append-only, fsynced text log (RUN/events.log): one line per event, written with O_APPEND
// and fsync before append() returns, so a line that was appended survives a crash (a torn last
// line may remain after a crash mid-write; readers skip lines that do not parse).
// Thread safe: appends from several threads are serialised.
#pragma once

#include <mutex>
#include <string>

#include "base/status.h"

namespace m1 {

class EventLog {
 public:
  EventLog() = default;
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;
  Status open(const std::string& path);
  Status append(const std::string& line);  // '\n' is added
 private:
  std::mutex mu_;
  int fd_ = -1;
  std::string path_;
};

}  // namespace m1
