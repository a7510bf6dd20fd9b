#include "base/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace m1 {
namespace fs = std::filesystem;

Result<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::errorf("{}: cannot open: {}", path, std::strerror(errno));
  std::string out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(size_t(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status s = Status::errorf("{}: read failed: {}", path, std::strerror(errno));
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    out.append(buf, size_t(n));
  }
  ::close(fd);
  return out;
}

Status write_file(const std::string& path, const void* data, size_t n) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::errorf("{}: cannot create: {}", path, std::strerror(errno));
  const char* p = static_cast<const char*>(data);
  size_t left = n;
  while (left > 0) {
    ssize_t w = ::write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      Status s = Status::errorf("{}: write failed: {}", path, std::strerror(errno));
      ::close(fd);
      return s;
    }
    p += w;
    left -= size_t(w);
  }
  if (::fsync(fd) != 0) {
    Status s = Status::errorf("{}: fsync failed: {}", path, std::strerror(errno));
    ::close(fd);
    return s;
  }
  ::close(fd);
  return Status::ok();
}

Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::errorf("{}: cannot open directory: {}", dir, std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::errorf("{}: fsync failed: {}", dir, std::strerror(errno));
  return Status::ok();
}

std::string parent_dir(const std::string& path) {
  auto p = fs::path(path).parent_path().string();
  return p.empty() ? "." : p;
}

std::string path_join(const std::string& a, const std::string& b) { return (fs::path(a) / b).string(); }

Status write_file_atomic(const std::string& path, const std::string& s) {
  std::string tmp = path + ".tmp";
  M1_RETURN_IF_ERROR(write_file(tmp, s));
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Status::errorf("{}: rename failed: {}", path, std::strerror(errno));
  return fsync_dir(parent_dir(path));
}

Status make_dirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::errorf("{}: cannot create directory: {}", dir, ec.message());
  return Status::ok();
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

Status remove_all(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return Status::errorf("{}: cannot remove: {}", path, ec.message());
  return Status::ok();
}

Status rename_durable(const std::string& src, const std::string& dst) {
  if (::rename(src.c_str(), dst.c_str()) != 0)
    return Status::errorf("rename {} -> {} failed: {}", src, dst, std::strerror(errno));
  return fsync_dir(parent_dir(dst));
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    names.push_back(it->path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace m1
