// m1rl replay stats|ls|show|tail|export|check RUN: the replay buffer of a live run (read-only, through
// a RocksDB secondary instance) or of a finished one. RUN is a run directory (RUN/replay) or the
// replay directory itself. --json on each.
// Damage: stats, check and export run RocksDB's own check first (check_replay_db); a damaged WAL
// makes them read a salvage snapshot (ReplayOptions::salvage) instead of the secondary, which would
// refuse it or stop at it. check and export then read every record past damaged blocks (audit()).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "actors/pipeline/wire.h"
#include "actors/replay/replay_store.h"
#include "base/file.h"
#include "model/tokenizer.h"
#include "tools/m1rl/commands.h"

namespace m1::cli {
namespace {

using json = nlohmann::json;

const char* status_name(msg::GroupStatus s) {
  switch (s) {
    case msg::GroupStatus::Pending: return "pending";
    case msg::GroupStatus::Consumed: return "consumed";
    case msg::GroupStatus::Dropped: return "dropped";
    case msg::GroupStatus::Quarantined: return "quarantined";
  }
  return "?";
}

// Decoded model text may hold invalid UTF-8 (the tokenizer is byte-level): replace, never throw.
std::string dumps(const json& j, int indent = -1) { return j.dump(indent, ' ', false, json::error_handler_t::replace); }

int fail(const Status& s) {
  std::fprintf(stderr, "m1rl: error: %s\n", s.message().c_str());
  return 1;
}

// The replay database of RUN: RUN/replay, or RUN itself when it is one. Errors name RUN.
Result<std::string> replay_dir(const std::string& run) {
  std::error_code ec;
  if (!std::filesystem::exists(run, ec))
    return Status::errorf("{}: not an m1rl run directory (no such file or directory)", run);
  if (!std::filesystem::is_directory(run, ec)) return Status::errorf("{}: not an m1rl run directory (not a directory)", run);
  const std::string sub = path_join(run, "replay");
  if (path_exists(path_join(sub, "CURRENT"))) return sub;
  if (path_exists(path_join(run, "CURRENT"))) return run;  // the replay directory itself
  if (std::filesystem::is_directory(sub, ec)) {
    const ReplayDbCheck c = check_replay_db(sub, false);  // names leftover table/log files, if any
    return Status::errorf("{}: not an m1rl run directory (replay/ holds no database: no CURRENT file){}", run,
                          c.damage.empty() ? "" : "; " + c.damage[0]);
  }
  return Status::errorf("{}: not an m1rl run directory (no replay/ database)", run);
}

// Opens DIR (RUN's replay database) read-only: a secondary instance, or a salvage snapshot.
Result<std::unique_ptr<ReplayStore>> open_dir(const std::string& run, const std::string& dir, bool salvage) {
  ReplayOptions o;
  o.read_only = true;
  o.salvage = salvage;
  auto s = ReplayStore::open(dir, o);
  if (!s.is_ok() && s.status().message().find("Corruption") != std::string::npos)
    return Status::error(s.status().message() + fmt::format(" (the database is damaged: `m1rl replay check {}` names "
                                                            "the damage)", run));
  return s;
}

Result<std::unique_ptr<ReplayStore>> open_ro(const std::string& run) {
  M1_ASSIGN_OR_RETURN(std::string dir, replay_dir(run));
  return open_dir(run, dir, false);
}

// Prints LINES to stderr, two-space indented, at most MAX of them.
void print_lines(const std::vector<std::string>& lines, size_t max) {
  for (size_t i = 0; i < lines.size() && i < max; ++i) std::fprintf(stderr, "  %s\n", lines[i].c_str());
  if (lines.size() > max) std::fprintf(stderr, "  … and %zu more (m1rl replay check --json lists all)\n", lines.size() - max);
}

json meta_json(const GroupMeta& m) {
  return {{"group_id", m.group_id},       {"seq", m.seq},
          {"status", status_name(m.status)}, {"reason", m.reason},
          {"task", m.task},               {"min_version", m.min_version},
          {"max_version", m.max_version}, {"reward_shaped_mean", m.reward_mean},
          {"reward_std", m.reward_std},   {"size", m.size},
          {"response_tokens", m.response_tokens}, {"consumed_by_steps", m.steps}};
}

json group_json(const ReplayGroup& g, bool decode_text) {
  json j = meta_json(g.meta);
  j["integrity"] = g.integrity.empty() ? "ok" : g.integrity;
  if (!g.integrity.empty()) return j;
  auto r = msg::decode<msg::JudgedGroup>(g.bytes);
  if (!r.is_ok()) return j;
  const msg::JudgedGroup* jg = r.value();
  j["prompt"] = jg->prompt() ? jg->prompt()->str() : "";
  j["reference"] = jg->reference() ? jg->reference()->str() : "";
  ByteTokenizer tok;
  json rs = json::array();
  for (const msg::RolloutData* d : *jg->rollouts()) {
    std::vector<int> t;
    if (d->tokens()) t.assign(d->tokens()->begin(), d->tokens()->end());
    json x = {{"index", d->index()}, {"rollout_id", d->rollout_id()}, {"tokens", t},
              {"finish", wire::finish_name(d->finish())}, {"reward_shaped", d->reward()},
              {"format_reward", d->format_reward()}, {"advantage", d->advantage()},
              {"reason", d->reason() ? d->reason()->str() : ""}};
    if (decode_text) x["text"] = tok.decode(t);
    x["behavior_logprobs"] = d->behavior_logprobs() ? std::vector<float>(d->behavior_logprobs()->begin(),
                                                                         d->behavior_logprobs()->end())
                                                    : std::vector<float>();
    x["versions"] = d->versions() ? std::vector<uint64_t>(d->versions()->begin(), d->versions()->end())
                                  : std::vector<uint64_t>();
    const msg::Provenance* p = d->provenance();
    x["provenance"] = {{"prompt_id", p->prompt_id()}, {"task", p->task()->str()},
                       {"dataset", p->dataset() ? p->dataset()->str() : ""}, {"generator_id", p->generator_id()},
                       {"judge_ids", p->judge_ids() ? std::vector<uint64_t>(p->judge_ids()->begin(),
                                                                            p->judge_ids()->end())
                                                    : std::vector<uint64_t>()},
                       {"seed", p->seed()}};
    rs.push_back(x);
  }
  j["rollouts"] = rs;
  return j;
}

void print_meta_line(const GroupMeta& m) {
  std::printf("%20llu  %-11s %-6s v%llu..%llu  reward_shaped %.3f  size %u  %s\n", (unsigned long long)m.group_id,
              status_name(m.status), m.task.c_str(), (unsigned long long)m.min_version,
              (unsigned long long)m.max_version, m.reward_mean, m.size, m.reason.c_str());
}

}  // namespace

int replay_stats(const std::string& run, bool as_json) {
  auto dir = replay_dir(run);
  if (!dir.is_ok()) return fail(dir.status());
  // stats() reads only the metadata: RocksDB's check covers the records, the indexes and the WAL.
  const ReplayDbCheck chk = check_replay_db(*dir);
  auto s = open_dir(run, *dir, !chk.wal_ok);
  if (!s.is_ok()) {
    if (chk.ok()) return fail(s.status());
    std::fprintf(stderr, "m1rl: error: replay %s is damaged (%s):\n", dir->c_str(), s.status().message().c_str());
    print_lines(chk.damage, 50);
    return 1;
  }
  auto st = s.value()->stats();
  if (!st.is_ok()) return fail(st.status());
  ReplayStats x = std::move(st).value();
  std::vector<std::string> errors = chk.damage;
  for (auto& e : s.value()->open_errors()) errors.push_back(e);
  errors.insert(errors.end(), x.errors.begin(), x.errors.end());
  x.errors = std::move(errors);
  json j;
  j["total"] = x.total;
  j["by_status"] = {{"pending", x.by_status[0]}, {"consumed", x.by_status[1]}, {"dropped", x.by_status[2]},
                    {"quarantined", x.by_status[3]}};
  j["drop_reasons"] = x.reasons;
  j["versions"] = {{"min", x.min_version}, {"max", x.max_version}};
  json sh = json::object(), gv = json::object(), bt = json::object();
  for (auto& [k, v] : x.staleness_at_use) sh[std::to_string(k)] = v;
  for (auto& [k, v] : x.groups_by_version) gv[std::to_string(k)] = v;
  for (auto& [k, v] : x.by_task)
    bt[k] = {{"groups", v.groups}, {"rollouts", v.rollouts}, {"reward_shaped_mean", v.mean_reward()},
             {"length_mean", v.mean_response_len()}, {"length_max", v.max_response_len}};
  j["staleness_histogram"] = sh;
  j["groups_by_version"] = gv;
  j["by_task"] = bt;
  j["errors"] = x.errors;
  const int rc = x.errors.empty() ? 0 : 1;
  if (as_json) {
    std::printf("%s\n", dumps(j, 2).c_str());
    return rc;
  }
  std::printf("groups %llu: pending %llu, consumed %llu, dropped_in_replay %llu, quarantined %llu\n",
              (unsigned long long)x.total, (unsigned long long)x.by_status[0], (unsigned long long)x.by_status[1],
              (unsigned long long)x.by_status[2], (unsigned long long)x.by_status[3]);
  std::printf("  (stored groups only: groups the sampler dropped before replay, for zero variance or dead letters,\n"
              "   are counted in metrics.jsonl as dropped_zero_variance and dropped_fraction)\n");
  for (auto& [k, v] : x.reasons) std::printf("  dropped/quarantined: %-40s %llu\n", k.c_str(), (unsigned long long)v);
  std::printf("versions %llu..%llu\n", (unsigned long long)x.min_version, (unsigned long long)x.max_version);
  std::printf("staleness at use:");
  for (auto& [k, v] : x.staleness_at_use) std::printf(" %llu:%llu", (unsigned long long)k, (unsigned long long)v);
  std::printf("\n");
  for (auto& [k, v] : x.by_task)
    std::printf("task %-8s groups %llu  reward_shaped %.3f  length mean %.1f max %u\n", k.c_str(),
                (unsigned long long)v.groups, v.mean_reward(), v.mean_response_len(), v.max_response_len);
  for (auto& e : x.errors) std::printf("error: %s\n", e.c_str());
  if (rc) std::fprintf(stderr, "m1rl: error: replay %s is damaged (%zu error(s)); `m1rl replay check %s` names every "
                       "damaged record\n", dir->c_str(), x.errors.size(), run.c_str());
  return rc;
}

int replay_ls(const std::string& run, const ReplayLsArgs& a, bool as_json) {
  auto s = open_ro(run);
  if (!s.is_ok()) return fail(s.status());
  ReplayFilter f;
  if (!a.status.empty()) {
    if (a.status == "pending") f.status = msg::GroupStatus::Pending;
    else if (a.status == "consumed") f.status = msg::GroupStatus::Consumed;
    else if (a.status == "dropped") f.status = msg::GroupStatus::Dropped;
    else if (a.status == "quarantined") f.status = msg::GroupStatus::Quarantined;
    else return fail(Status::errorf("--status '{}': expected pending, consumed, dropped or quarantined", a.status));
  }
  f.task = a.task;
  f.min_version = a.min_version;
  f.max_version = a.max_version;
  f.min_reward = float(a.min_reward);
  f.max_reward = float(a.max_reward);
  f.limit = size_t(a.limit);
  auto l = s.value()->list(f);
  if (!l.is_ok()) return fail(l.status());
  if (as_json) {
    json arr = json::array();
    for (auto& m : l->groups) arr.push_back(meta_json(m));
    std::printf("%s\n", dumps(json{{"groups", arr}, {"total_matched", l->total_matched}, {"errors", l->errors}}, 2).c_str());
    return 0;
  }
  for (auto& m : l->groups) print_meta_line(m);
  std::printf("%zu shown of %llu matching\n", l->groups.size(), (unsigned long long)l->total_matched);
  return 0;
}

int replay_show(const std::string& run, uint64_t group_id, bool as_json) {
  auto s = open_ro(run);
  if (!s.is_ok()) return fail(s.status());
  auto g = s.value()->get(group_id);
  if (!g.is_ok()) return fail(g.status());
  json j = group_json(g.value(), true);
  if (as_json) {
    std::printf("%s\n", dumps(j, 2).c_str());
    return 0;
  }
  print_meta_line(g->meta);
  std::printf("prompt: %s\nreference: %s\nintegrity: %s\n", j.value("prompt", "").c_str(),
              j.value("reference", "").c_str(), j["integrity"].get<std::string>().c_str());
  if (j.contains("rollouts"))
    for (auto& r : j["rollouts"]) {
      std::printf("  [%d] %-10s reward_shaped %.2f adv %+.3f  %s\n      tokens %s\n      logprobs %s\n      versions %s\n      %s\n",
                  r["index"].get<int>(), r["finish"].get<std::string>().c_str(), r["reward_shaped"].get<double>(),
                  r["advantage"].get<double>(), r["text"].get<std::string>().c_str(), dumps(r["tokens"]).c_str(),
                  dumps(r["behavior_logprobs"]).c_str(), dumps(r["versions"]).c_str(),
                  r["reason"].get<std::string>().c_str());
      std::printf("      provenance %s\n", dumps(r["provenance"]).c_str());
    }
  return 0;
}

int replay_tail(const std::string& run, bool as_json, bool follow, int limit) {
  auto s = open_ro(run);
  if (!s.is_ok()) return fail(s.status());
  ReplayCounters c = s.value()->counters();
  uint64_t after = c.last_seq > uint64_t(limit) ? c.last_seq - uint64_t(limit) : 0;
  for (;;) {
    auto l = s.value()->since(after);
    if (!l.is_ok()) return fail(l.status());
    for (auto& m : l->groups) {
      if (as_json)
        std::printf("%s\n", dumps(meta_json(m)).c_str());
      else
        print_meta_line(m);
      after = std::max(after, m.seq);
    }
    std::fflush(stdout);
    if (!follow) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    Status r = s.value()->refresh();
    if (!r.is_ok()) return fail(r);
  }
}

int replay_export(const std::string& run, const std::string& out, bool skip_damaged) {
  auto dir = replay_dir(run);
  if (!dir.is_ok()) return fail(dir.status());
  const std::string hint = fmt::format("`m1rl replay check {}` names every damaged record", run);
  const ReplayDbCheck chk = check_replay_db(*dir, false);  // the WAL; table blocks are read below
  if (!chk.ok() && !skip_damaged) {
    std::fprintf(stderr, "m1rl: error: replay %s is damaged; nothing exported:\n", dir->c_str());
    print_lines(chk.damage, 20);
    std::fprintf(stderr, "  export the intact groups with --skip-damaged; %s\n", hint.c_str());
    return 1;
  }
  auto s = open_dir(run, *dir, !chk.wal_ok);
  if (!s.is_ok()) {
    if (chk.ok()) return fail(s.status());
    std::fprintf(stderr, "m1rl: error: replay %s is damaged beyond reading (%s); nothing exported:\n", dir->c_str(),
                 s.status().message().c_str());
    print_lines(chk.damage, 20);
    return 1;
  }
  std::string text;
  uint64_t lines = 0;
  auto a = s.value()->audit([&](const ReplayGroup& g) {
    text += dumps(group_json(g, true)) + "\n";
    lines++;
    return true;
  });
  if (!a.is_ok()) return fail(a.status());
  if (a->unreadable > 0 && !skip_damaged) {
    std::fprintf(stderr, "m1rl: error: replay %s: %llu of %llu groups are damaged; nothing exported:\n",
                 dir->c_str(), (unsigned long long)a->unreadable, (unsigned long long)a->records);
    print_lines(a->errors, 20);
    std::fprintf(stderr, "  export the intact groups with --skip-damaged; %s\n", hint.c_str());
    return 1;
  }
  if (out.empty() || out == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  } else if (Status w = write_file_atomic(out, text); !w.is_ok()) {
    return fail(w);
  }
  if (skip_damaged) {
    const std::string flagged =
        a->bad_payload ? fmt::format(" ({} of them with a record failing verification, flagged in \"integrity\")",
                                     a->bad_payload)
                       : "";
    std::fprintf(stderr, "m1rl replay export: %llu groups exported%s, %llu damaged groups skipped%s\n",
                 (unsigned long long)lines, flagged.c_str(), (unsigned long long)a->unreadable,
                 a->errors.empty() && chk.ok() ? "" : ":");
    std::vector<std::string> why = chk.damage;
    if (!chk.wal_ok) why.push_back("groups newer than any read here that only a damaged WAL record held are not counted");
    why.insert(why.end(), a->errors.begin(), a->errors.end());
    print_lines(why, 50);
  }
  return 0;
}

int replay_check(const std::string& run, bool as_json) {
  auto dir = replay_dir(run);
  if (!dir.is_ok()) return fail(dir.status());
  const ReplayDbCheck chk = check_replay_db(*dir);
  std::vector<std::string> errors = chk.damage;
  ReplayAudit a;
  bool audited = false;
  ReplayOptions o;
  o.read_only = true;
  o.salvage = !chk.wal_ok;
  auto s = ReplayStore::open(*dir, o);
  if (!s.is_ok()) {
    errors.push_back("records not checked: " + s.status().message());
  } else {
    for (auto& e : s.value()->open_errors()) errors.push_back(e);
    auto r = s.value()->audit();
    if (!r.is_ok()) {
      errors.push_back("records not checked: " + r.status().message());
    } else {
      a = std::move(r).value();
      audited = true;
      errors.insert(errors.end(), a.errors.begin(), a.errors.end());
    }
  }
  const bool ok = errors.empty();
  if (as_json) {
    json j = {{"ok", ok},
              {"dir", *dir},
              {"records", a.records},
              {"intact", a.intact},
              {"damaged", a.damaged()},
              {"unreadable", a.unreadable},
              {"bad_payload", a.bad_payload},
              {"records_checked", audited},
              {"sst_files", chk.sst_files},
              {"wal_files", chk.wal_files},
              {"wal_ok", chk.wal_ok},
              {"damaged_files", chk.damage},
              {"errors", errors}};
    std::printf("%s\n", dumps(j, 2).c_str());
    return ok ? 0 : 1;
  }
  if (ok) {
    std::printf("replay %s: ok: %llu groups, all intact; %llu table files and the WAL (%llu files) pass RocksDB's "
                "checks\n", dir->c_str(), (unsigned long long)a.records, (unsigned long long)chk.sst_files,
                (unsigned long long)chk.wal_files);
    return 0;
  }
  std::printf("replay %s: DAMAGED\n", dir->c_str());
  std::printf("files: %llu table files checked, WAL %s; %zu damaged file(s) or failed step(s)\n",
              (unsigned long long)chk.sst_files, chk.wal_ok ? "ok" : "DAMAGED", chk.damage.size());
  if (audited)
    std::printf("records: %llu groups: %llu intact, %llu damaged (%llu unreadable or lost, %llu with a record failing "
                "verification)\n", (unsigned long long)a.records, (unsigned long long)a.intact,
                (unsigned long long)a.damaged(), (unsigned long long)a.unreadable, (unsigned long long)a.bad_payload);
  const size_t max = 200;
  for (size_t i = 0; i < errors.size() && i < max; ++i) std::printf("  %s\n", errors[i].c_str());
  if (errors.size() > max) std::printf("  … and %zu more (--json lists all)\n", errors.size() - max);
  if (audited && a.intact > 0)
    std::printf("export the intact groups: m1rl replay export %s --skip-damaged --out FILE\n", run.c_str());
  return 1;
}

}  // namespace m1::cli

namespace m1::cli {

int bench_replay(int groups, bool as_json) {
  nlohmann::json j = nlohmann::json::object();
  for (int per : {1, 32}) {
    const std::string dir = "/tmp/m1-bench-replay-" + std::to_string(::getpid()) + "-" + std::to_string(per);
    auto r = bench_replay_append(dir, per == 1 ? std::min(groups, 500) : groups, per);
    if (!r.is_ok()) return fail(r.status());
    j[std::to_string(per)] = {{"groups_per_s", r->groups_per_s}, {"mb_per_s", r->mb_per_s},
                              {"bytes_per_group", r->bytes_per_group}, {"commits", r->commits}};
    if (!as_json)
      std::printf("durable replay append, %2d group(s) per synced commit: %8.0f groups/s  %6.1f MB/s  (%.0f B/group)\n",
                  per, r->groups_per_s, r->mb_per_s, r->bytes_per_group);
  }
  if (as_json) std::printf("%s\n", nlohmann::json{{"append_groups_per_s_by_commit_size", j}}.dump(2).c_str());
  return 0;
}

}  // namespace m1::cli
