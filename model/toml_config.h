// Reading TOML run configs with errors that name the file and the key. Keys are dotted paths
// ("train.steps"). A missing optional key gives its default; a present key of the wrong type or
// out of range is an error; keys nobody read are reported by unused_keys() so callers can warn.
// Not thread safe.
#pragma once

#include <set>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "base/status.h"

namespace m1 {

class TomlConfig {
 public:
  static Result<TomlConfig> load(const std::string& path);
  static Result<TomlConfig> parse(const std::string& text, const std::string& source);
  const std::string& source() const { return source_; }
  bool has(const std::string& key) const;

  Result<std::string> get_string(const std::string& key, const std::string& def, bool required = false);
  Result<int64_t> get_int(const std::string& key, int64_t def, int64_t lo, int64_t hi);
  Result<double> get_double(const std::string& key, double def, double lo, double hi);
  Result<bool> get_bool(const std::string& key, bool def);
  Result<std::vector<std::string>> get_strings(const std::string& key, const std::vector<std::string>& def);
  // Keys present in the file that no get_* asked for (dotted).
  std::vector<std::string> unused_keys() const;

 private:
  toml::node_view<const toml::node> at(const std::string& key) const;
  std::string source_;
  toml::table root_;
  std::set<std::string> used_;
};

}  // namespace m1
