#include "actors/pipeline/run_fingerprint.h"

#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "base/file.h"
#include "model/config.h"
#include "model/toml_config.h"

namespace m1 {

namespace {

std::string fnv64(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : bytes) h = (h ^ ch) * 1099511628211ull;
  return fmt::format("fnv64:{:016x}", h);
}

std::string join(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s + "]";
}

// section.key -> the value as TOML text, for every key of a config (run.dir excluded: it names
// where the run is, not what it is).
Result<std::map<std::string, std::string>> flat_keys(const std::string& text, const std::string& source) {
  M1_ASSIGN_OR_RETURN(TomlConfig t, TomlConfig::parse(text, source));
  std::map<std::string, std::string> out;
  for (const auto& [key, value] : t.flat_values())
    if (key != "run.dir") out[key] = value;
  return out;
}

}  // namespace

Result<RunFingerprint> fingerprint_of(const RunConfig& c) {
  RunFingerprint f;
  const std::string model_json =
      c.sft_checkpoint.empty() ? c.model_config : path_join(c.sft_checkpoint, "config.json");
  M1_ASSIGN_OR_RETURN(ModelConfig mc, load_model_config(model_json));
  f.model = fnv64(model_config_to_json(mc));
  f.tasks = c.tasks;
  if (!c.prompts_jsonl.empty()) {
    M1_ASSIGN_OR_RETURN(std::string bytes, read_file(c.prompts_jsonl));
    f.prompts = fnv64(bytes);
  }
  return f;
}

std::string ConfigChange::describe() const {
  std::string s;
  for (const auto* v : {&identity, &keys})
    for (const auto& x : *v) s += (s.empty() ? "" : "; ") + x;
  return s;
}

Result<ConfigChange> compare_with_run(const RunConfig& c, const RunFingerprint& now) {
  ConfigChange ch;
  const std::string old_toml = path_join(c.run_dir, "config.toml");
  if (!path_exists(old_toml)) return ch;
  ch.first_start = false;
  const std::string fp = path_join(c.run_dir, "fingerprint.json");
  if (path_exists(fp)) {
    M1_ASSIGN_OR_RETURN(std::string text, read_file(fp));
    RunFingerprint old;
    try {
      auto j = nlohmann::json::parse(text);
      if (j.at("format").get<std::string>() != "m1rl-run-fingerprint" || j.at("version").get<int>() != 1)
        return Status::errorf("{}: not an m1rl run fingerprint (format/version)", fp);
      old.model = j.at("model").get<std::string>();
      old.tasks = j.at("tasks").get<std::vector<std::string>>();
      old.prompts = j.at("prompts").get<std::string>();
    } catch (const std::exception& e) {
      return Status::errorf("{}: invalid run fingerprint: {}", fp, e.what());
    }
    if (old.model != now.model)
      ch.identity.push_back(fmt::format("model ({} -> {})", old.model, now.model));
    if (old.tasks != now.tasks)
      ch.identity.push_back(fmt::format("sampler.tasks ({} -> {})", join(old.tasks), join(now.tasks)));
    if (old.prompts != now.prompts)
      ch.identity.push_back(fmt::format("sampler.prompts content ({} -> {})", old.prompts.empty() ? "none" : old.prompts,
                                        now.prompts.empty() ? "none" : now.prompts));
  }
  M1_ASSIGN_OR_RETURN(std::string old_text, read_file(old_toml));
  M1_ASSIGN_OR_RETURN(std::string new_text, read_file(c.source));
  M1_ASSIGN_OR_RETURN(auto before, flat_keys(old_text, old_toml));
  M1_ASSIGN_OR_RETURN(auto after, flat_keys(new_text, c.source));
  for (const auto& [k, v] : after) {
    auto it = before.find(k);
    if (it == before.end())
      ch.keys.push_back(fmt::format("{}: (unset) -> {}", k, v));
    else if (it->second != v)
      ch.keys.push_back(fmt::format("{}: {} -> {}", k, it->second, v));
  }
  for (const auto& [k, v] : before)
    if (!after.count(k)) ch.keys.push_back(fmt::format("{}: {} -> (unset)", k, v));
  return ch;
}

Status record_run_config(const RunConfig& c, const RunFingerprint& now) {
  M1_ASSIGN_OR_RETURN(std::string text, read_file(c.source));
  M1_RETURN_IF_ERROR(write_file_atomic(path_join(c.run_dir, "config.toml"), text));
  nlohmann::json j = {{"format", "m1rl-run-fingerprint"}, {"version", 1}, {"model", now.model},
                      {"tasks", now.tasks},                {"prompts", now.prompts}};
  return write_file_atomic(path_join(c.run_dir, "fingerprint.json"), j.dump(2) + "\n");
}

}  // namespace m1
