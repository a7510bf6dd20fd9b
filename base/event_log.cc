#include "base/event_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace m1 {

EventLog::~EventLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status EventLog::open(const std::string& path) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  path_ = path;
  if (fd_ < 0) return Status::errorf("{}: cannot open: {}", path, std::strerror(errno));
  return Status::ok();
}

Status EventLog::append(const std::string& line) {
  std::lock_guard<std::mutex> lk(mu_);
  if (fd_ < 0) return Status::error("event log: not open");
  const std::string l = line + "\n";
  size_t off = 0;
  while (off < l.size()) {
    ssize_t w = ::write(fd_, l.data() + off, l.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::errorf("{}: write failed: {}", path_, std::strerror(errno));
    }
    off += size_t(w);
  }
  if (::fdatasync(fd_) != 0) return Status::errorf("{}: fdatasync failed: {}", path_, std::strerror(errno));
  return Status::ok();
}

}  // namespace m1
