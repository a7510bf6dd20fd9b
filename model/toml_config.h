// Reading TOML run configs with errors that name the file and the key. Keys are dotted paths
// ("train.steps"). A missing optional key gives its default; a present key of the wrong type or
// out of range (NaN and infinities included) is an error. Paths (get_path) are relative to the
// config file's folder, so a config and the files it names can be copied together. After every
// key has been asked for, check_unknown() turns keys and sections nobody asked for into an error
// with "did you mean" for near misses. Not thread safe.
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
  // A path: absolute as written, relative ones resolved against the config file's folder; "" when
  // absent (or required: an error).
  Result<std::string> get_path(const std::string& key, bool required = false);
  // Keys present in the file that no get_* asked for (dotted).
  std::vector<std::string> unused_keys() const;
  // Every key a get_* was asked for so far (dotted), present in the file or not.
  const std::set<std::string>& asked_keys() const { return used_; }
  // Every key (dotted, two levels) with its value written as TOML, in the file's order.
  std::vector<std::pair<std::string, std::string>> flat_values() const;
  // Error naming every unknown key and section (with the nearest known name when it is close).
  Status check_unknown() const;

 private:
  toml::node_view<const toml::node> at(const std::string& key) const;
  std::string source_;
  toml::table root_;
  std::set<std::string> used_;
};

}  // namespace m1
