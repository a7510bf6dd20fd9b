#include "model/toml_config.h"

#include <cmath>

#include "base/file.h"

namespace m1 {

Result<TomlConfig> TomlConfig::parse(const std::string& text, const std::string& source) {
  TomlConfig c;
  c.source_ = source;
  try {
    c.root_ = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return Status::errorf("{}:{}:{}: invalid TOML: {}", source, e.source().begin.line, e.source().begin.column,
                          std::string(e.description()));
  }
  return c;
}

Result<TomlConfig> TomlConfig::load(const std::string& path) {
  M1_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return parse(text, path);
}

toml::node_view<const toml::node> TomlConfig::at(const std::string& key) const {
  return toml::node_view<const toml::node>(root_.at_path(key));
}

bool TomlConfig::has(const std::string& key) const { return bool(root_.at_path(key)); }

Result<std::string> TomlConfig::get_string(const std::string& key, const std::string& def, bool required) {
  used_.insert(key);
  auto n = at(key);
  if (!n) {
    if (required) return Status::errorf("{}: missing required key '{}' (a string)", source_, key);
    return def;
  }
  if (!n.is_string()) return Status::errorf("{}: key '{}': expected a string", source_, key);
  return std::string(*n.value<std::string>());
}

Result<int64_t> TomlConfig::get_int(const std::string& key, int64_t def, int64_t lo, int64_t hi) {
  used_.insert(key);
  auto n = at(key);
  if (!n) return def;
  if (!n.is_integer()) return Status::errorf("{}: key '{}': expected an integer", source_, key);
  const int64_t v = *n.value<int64_t>();
  if (v < lo || v > hi) return Status::errorf("{}: key '{}': {} is out of range [{}, {}]", source_, key, v, lo, hi);
  return v;
}

Result<double> TomlConfig::get_double(const std::string& key, double def, double lo, double hi) {
  used_.insert(key);
  auto n = at(key);
  if (!n) return def;
  double v;
  if (n.is_floating_point())
    v = *n.value<double>();
  else if (n.is_integer())
    v = double(*n.value<int64_t>());
  else
    return Status::errorf("{}: key '{}': expected a number", source_, key);
  if (!std::isfinite(v) || v < lo || v > hi)
    return Status::errorf("{}: key '{}': {} is out of range [{}, {}]", source_, key, v, lo, hi);
  return v;
}

Result<bool> TomlConfig::get_bool(const std::string& key, bool def) {
  used_.insert(key);
  auto n = at(key);
  if (!n) return def;
  if (!n.is_boolean()) return Status::errorf("{}: key '{}': expected true or false", source_, key);
  return *n.value<bool>();
}

Result<std::vector<std::string>> TomlConfig::get_strings(const std::string& key, const std::vector<std::string>& def) {
  used_.insert(key);
  auto n = at(key);
  if (!n) return def;
  const toml::array* a = n.as_array();
  if (!a) return Status::errorf("{}: key '{}': expected an array of strings", source_, key);
  std::vector<std::string> out;
  for (const auto& e : *a) {
    if (!e.is_string()) return Status::errorf("{}: key '{}': expected an array of strings", source_, key);
    out.push_back(*e.value<std::string>());
  }
  return out;
}

std::vector<std::string> TomlConfig::unused_keys() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : root_) {
    const std::string top(k.str());
    if (const toml::table* t = v.as_table()) {
      for (const auto& [k2, v2] : *t) {
        const std::string full = top + "." + std::string(k2.str());
        if (!used_.count(full)) out.push_back(full);
      }
    } else if (!used_.count(top)) {
      out.push_back(top);
    }
  }
  return out;
}

}  // namespace m1
