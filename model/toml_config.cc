#include "model/toml_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

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

Result<std::string> TomlConfig::get_path(const std::string& key, bool required) {
  M1_ASSIGN_OR_RETURN(std::string p, get_string(key, "", required));
  if (p.empty()) {
    if (required) return Status::errorf("{}: key '{}': expected a non-empty path", source_, key);
    return p;
  }
  if (p[0] == '/') return p;
  const std::string dir = parent_dir(source_);
  if (dir.empty() || dir == ".") return p;
  return std::filesystem::path(path_join(dir, p)).lexically_normal().string();
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The candidate nearest to `name`, when it is near enough to be a typo ("" otherwise).
std::string nearest(const std::string& name, const std::set<std::string>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(2, name.size() / 3) + 1;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(name, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

}  // namespace

Status TomlConfig::check_unknown() const {
  std::set<std::string> sections;
  for (const auto& k : used_) {
    const size_t dot = k.find('.');
    if (dot != std::string::npos) sections.insert(k.substr(0, dot));
  }
  std::vector<std::string> problems;
  std::set<std::string> reported_sections;
  for (const auto& k : unused_keys()) {
    const size_t dot = k.find('.');
    const std::string sec = dot == std::string::npos ? "" : k.substr(0, dot);
    if (!sec.empty() && !sections.count(sec)) {
      if (!reported_sections.insert(sec).second) continue;
      const std::string near = nearest(sec, sections);
      problems.push_back(fmt::format("unknown section '[{}]'{}", sec,
                                     near.empty() ? "" : fmt::format(" (did you mean '[{}]'?)", near)));
      continue;
    }
    const std::string near = nearest(k, used_);
    problems.push_back(
        fmt::format("unknown key '{}'{}", k, near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)));
  }
  if (problems.empty()) return Status::ok();
  std::string msg = source_ + ": ";
  for (size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
  std::vector<std::string> secs(sections.begin(), sections.end());
  std::string known;
  for (const auto& s : secs) known += (known.empty() ? "" : ", ") + ("[" + s + "]");
  return Status::error(msg + " (known sections: " + known + ")");
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

namespace m1 {

std::vector<std::pair<std::string, std::string>> TomlConfig::flat_values() const {
  std::vector<std::pair<std::string, std::string>> out;
  auto text = [](const toml::node& n) {
    std::ostringstream os;
    n.visit([&](const auto& v) { os << v; });
    return os.str();
  };
  for (const auto& [k, v] : root_) {
    const std::string top(k.str());
    if (const toml::table* t = v.as_table()) {
      for (const auto& [k2, v2] : *t) out.emplace_back(top + "." + std::string(k2.str()), text(v2));
    } else {
      out.emplace_back(top, text(v));
    }
  }
  return out;
}

}  // namespace m1
