// File system access. Every read and write that tests need to fault goes through these
// functions; errors name the path. Directory commits are atomic: write into DIR.tmp, fsync the
// files and the directory, rename to DIR, fsync the parent.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace m1 {

Result<std::string> read_file(const std::string& path);
// Writes and fsyncs a file (not atomic by itself: use inside a temp dir, or write_file_atomic).
Status write_file(const std::string& path, const void* data, size_t n);
inline Status write_file(const std::string& path, const std::string& s) {
  return write_file(path, s.data(), s.size());
}
// Writes PATH.tmp, fsyncs it, renames it over PATH, fsyncs the directory.
Status write_file_atomic(const std::string& path, const std::string& s);
Status fsync_dir(const std::string& dir);
Status make_dirs(const std::string& dir);
bool path_exists(const std::string& path);
Status remove_all(const std::string& path);
// Renames SRC to DST (DST must not exist) and fsyncs DST's parent.
Status rename_durable(const std::string& src, const std::string& dst);
std::vector<std::string> list_dir(const std::string& dir);  // names only, sorted; empty if absent
std::string path_join(const std::string& a, const std::string& b);
std::string parent_dir(const std::string& path);

}  // namespace m1
