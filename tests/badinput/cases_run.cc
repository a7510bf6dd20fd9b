// Rows on run directories: the replay buffer (inspection commands on bad paths and damaged
// databases), checkpoints, the run's own files, and stop signals during the SFT and RL stages.
// {shared} is the run fixture: a finished tiny run in {shared}/r (cases.h); rows copy it.
#include <signal.h>

#include <filesystem>
#include <memory>
#include <regex>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <rocksdb/db.h>

#include "tests/badinput/cases.h"

namespace m1::badinput {

namespace fs = std::filesystem;

namespace {

Case on_run(std::string name, Kind kind, std::string args, Expect e, std::vector<std::string> words = {}) {
  Case c;
  c.name = std::move(name);
  c.kind = kind;
  c.files = finished_run_files(base_run());
  c.args = std::move(args);
  c.expect = e;
  c.words = std::move(words);
  c.timeout_s = 120;
  return c;
}

// Overwrites 64 bytes in the middle of the largest file with extension EXT (".sst": a table
// file; ".log": a write-ahead log, NNNNNN.log) of RUN/replay.
Prepare corrupt_replay(const std::string& ext) {
  return {"corrupt the replay", [ext](Ctx& c) {
            const fs::path dir = fs::path(c.dir) / "r" / "replay";
            fs::path best;
            uintmax_t best_size = 0;
            std::error_code ec;
            for (const auto& e : fs::directory_iterator(dir, ec)) {
              const std::string n = e.path().filename().string();
              if (e.path().extension() != ext || !std::isdigit((unsigned char)n[0])) continue;
              if (e.file_size() > best_size) best = e.path(), best_size = e.file_size();
            }
            if (best_size < 128) return c.problems.push_back(fmt::format("setup: no {} file in {}", ext, dir.string()));
            overwrite_at(best.string(), 0.5, std::string(64, '\xa5')).fn(c);
          }};
}

// Flushes every column family of the (closed) replay database DIR into table files, as RocksDB
// does by itself once a memtable fills (64 MiB: more than a seconds-long run writes).
void flush_replay(const std::string& dir) {
  std::vector<std::string> names;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (const auto& n : names) descs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status st = rocksdb::DB::Open(rocksdb::DBOptions(), dir, descs, &handles, &db);
  REQUIRE_MESSAGE(st.ok(), st.ToString());
  st = db->Flush(rocksdb::FlushOptions(), handles);
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  delete db;
  REQUIRE_MESSAGE(st.ok(), st.ToString());
}

Case signal_row(std::string name, std::vector<File> files, std::string args, std::vector<Signal> sigs, Expect e) {
  Case c;
  c.name = std::move(name);
  c.kind = Kind::kSignal;
  c.files = std::move(files);
  c.args = std::move(args);
  c.signals = std::move(sigs);
  c.expect = e;
  c.timeout_s = 120;  // a hang guard: every signal waits for observed progress
  return c;
}

// SIGSTOP once READY holds; while stopped, SIGINT and SIGTERM (both pending, so the process
// sees two stop signals whatever its speed); then SIGCONT.
std::vector<Signal> two_while_stopped(std::function<bool(Ctx&)> ready, const std::string& what) {
  return {{what, std::move(ready), 0, SIGSTOP},
          {"the process is stopped", when_stopped(), 0, SIGINT},
          {"", nullptr, 0, SIGTERM},
          {"", nullptr, 0, SIGCONT}};
}

// The newest learner step in RUN/metrics.jsonl once it is >= 1, kept in *AT (the step the run
// had reached when the signal that follows was sent).
std::function<bool(Ctx&)> rl_step_recorded(std::shared_ptr<int64_t> at) {
  return [at](Ctx& c) {
    const std::string m = read_all(c.dir + "/r/metrics.jsonl");
    static const std::regex step_re("\"step\":(\\d+)");
    int64_t best = -1;
    for (auto it = std::sregex_iterator(m.begin(), m.end(), step_re); it != std::sregex_iterator(); ++it)
      best = std::max<int64_t>(best, std::stoll((*it)[1].str()));
    if (best < 1) return false;
    *at = best;
    return true;
  };
}

// A stopped run trains at most K more learner steps after the signal (it stops at a step
// boundary; K covers the steps already in flight), whatever the machine's speed.
Post stops_within_steps(std::shared_ptr<int64_t> at, int64_t k) {
  return {"stops promptly", nullptr, [at, k](Ctx& c) {
            std::smatch m;
            if (!std::regex_search(c.output, m, std::regex("\"end_step\":(\\d+)"))) {
              c.problems.push_back("no \"end_step\" in the output");
              return;
            }
            const int64_t end = std::stoll(m[1].str());
            if (*at >= 0 && end > *at + k)
              c.problems.push_back(fmt::format("the run went on for {} learner steps after the signal (step {} when "
                                               "signalled, end_step {}); a stop must take effect within {} steps",
                                               end - *at, *at, end, k));
          }};
}

}  // namespace

std::string model_fixture() {
  static std::string dir;
  if (!dir.empty()) return dir;
  dir = scratch("shared-model");
  write_all(dir + "/tiny.json", src_file("configs/models/tiny.json"));
  nlohmann::json wide = nlohmann::json::parse(src_file("configs/models/tiny.json"));
  wide["hidden_size"] = 64;
  write_all(dir + "/wide.json", wide.dump(2));
  for (const char* m : {"tiny", "wide"}) {
    Run r = run_m1(fmt::format("model init --config {0}/{1}.json --seed 7 --out {0}/{2}", dir, m,
                               std::string(m) == "tiny" ? "model" : "wide"));
    REQUIRE_MESSAGE(r.rc == 0, "fixture: model init " << m << ": " << r.out);
  }
  return dir;
}

std::string run_fixture() {
  static std::string dir;
  if (!dir.empty()) return dir;
  dir = scratch("shared-run");
  write_all(dir + "/run.toml", base_run().text());
  write_all(dir + "/tiny.json", src_file("configs/models/tiny.json"));
  Run r = run_m1("run " + dir + "/run.toml");
  REQUIRE_MESSAGE(r.rc == 0, "fixture: the tiny run failed: " << r.out);
  REQUIRE(fs::exists(dir + "/r/checkpoints/step_2/DONE"));
  // r-sst: the same run with its replay flushed to table files (r keeps it in the WAL).
  fs::copy(dir + "/r", dir + "/r-sst", fs::copy_options::recursive);
  flush_replay(dir + "/r-sst/replay");
  bool tables = false;
  for (const auto& e : fs::directory_iterator(dir + "/r-sst/replay")) tables |= e.path().extension() == ".sst";
  REQUIRE_MESSAGE(tables, "fixture: flushing " << dir << "/r-sst/replay made no .sst file");
  return dir;
}

std::vector<Case> replay_dir_cases() {
  const Kind k = Kind::kReplayDir;
  std::vector<Case> v = {
      on_run("replay stats on the finished run", k, "replay stats {dir}/r", Expect::kOk),
      // one name per metric across the progress line, metrics.jsonl and replay: the stored reward
      // is the shaped one, stored drops are not the sampler's pre-replay drops
      on_run("replay stats names its reward and drops as metrics.jsonl does", k, "replay stats {dir}/r", Expect::kOk,
             {"reward_shaped", "dropped_in_replay", "dropped_zero_variance"}),
      on_run("replay ls names the stored reward reward_shaped", k, "replay ls {dir}/r --limit 1", Expect::kOk,
             {"reward_shaped"}),
      on_run("replay stats on RUN/replay itself", k, "replay stats {dir}/r/replay --json", Expect::kOk),
      on_run("replay show of a group that does not exist", k, "replay show {dir}/r 999999999", Expect::kError,
             {"999999999"}),
      on_run("replay show GROUP -5", k, "replay show {dir}/r -5", Expect::kUsage, {"GROUP"}),
      on_run("replay ls --status bogus", k, "replay ls {dir}/r --status bogus", Expect::kUsageOrError, {"bogus"}),
      on_run("replay ls --min-reward nan", k, "replay ls {dir}/r --min-reward nan", Expect::kUsage, {"--min-reward"}),
      on_run("replay ls --max-version -1", k, "replay ls {dir}/r --max-version -1", Expect::kUsage, {"--max-version"}),
      on_run("replay export --out in a missing folder", k, "replay export {dir}/r --out {dir}/no/x.jsonl",
             Expect::kError, {"{dir}/no/x.jsonl"}),
      on_run("replay export --out is a folder", k, "replay export {dir}/r --out {dir}/r/replay", Expect::kError,
             {"{dir}/r/replay"}),
      on_run("replay stats on a file", k, "replay stats {dir}/run.toml", Expect::kError, {"{dir}/run.toml"}),
  };
  {
    Case c = on_run("replay stats on a run without replay/", k, "replay stats {dir}/r", Expect::kError, {"{dir}/r"});
    c.prepare.push_back(remove_path("{dir}/r/replay"));
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("replay stats with CURRENT removed", k, "replay stats {dir}/r", Expect::kNonZero, {"{dir}/r"});
    c.prepare.push_back(remove_path("{dir}/r/replay/CURRENT"));
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("replay stats with CURRENT garbage", k, "replay stats {dir}/r", Expect::kNonZero, {"{dir}/r"});
    c.files.push_back({"r/replay/CURRENT", "MANIFEST-999999\n"});
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("replay stats with the MANIFEST cut in half", k, "replay stats {dir}/r", Expect::kNonZero,
                    {"{dir}/r"});
    c.prepare.push_back({"cut MANIFEST", [](Ctx& ctx) {
                           for (const auto& e : fs::directory_iterator(ctx.dir + "/r/replay"))
                             if (e.path().filename().string().rfind("MANIFEST-", 0) == 0)
                               truncate_to(e.path().string(), 0.5).fn(ctx);
                         }});
    v.push_back(std::move(c));
  }
  return v;
}

std::vector<Case> checkpoint_cases() {
  const Kind k = Kind::kCheckpointDir;
  const std::string run = "run {dir}/run.toml", ck = "{dir}/r/checkpoints/step_2/";
  // Resumes or refuses clearly, naming the damaged checkpoint (WORDS) either way.
  auto row = [&](std::string name, std::vector<Prepare> p, std::vector<std::string> words = {"step_2"}) {
    Case c = on_run(std::move(name), k, run, Expect::kOkOrError, std::move(words));
    c.prepare = std::move(p);
    return c;
  };
  std::vector<Case> v = {
      row("newest model.safetensors cut in half", {truncate_to(ck + "model.safetensors", 0.5)}),
      row("newest optimizer.safetensors cut in half", {truncate_to(ck + "optimizer.safetensors", 0.5)}),
      row("newest model.safetensors header length garbage",
          {overwrite_at(ck + "model.safetensors", 0, "\xff\xff\xff\xff\xff\xff\xff\x7f")}),
      row("newest learner.json not JSON", {overwrite_at(ck + "learner.json", 0, "#!")}),
      row("newest learner.json removed", {remove_path(ck + "learner.json")}),
      row("newest config.json not JSON", {overwrite_at(ck + "config.json", 0, "#!")}),
      row("newest DONE removed: the checkpoint is incomplete and skipped", {remove_path(ck + "DONE")}, {}),
  };
  v.back().expect = Expect::kOk;
  {
    Case c = row("every RL checkpoint cut in half",
                 {truncate_to(ck + "model.safetensors", 0.5),
                  truncate_to("{dir}/r/checkpoints/step_1/model.safetensors", 0.5)},
                 {"step_"});
    v.push_back(std::move(c));
  }
  {
    Case c = row("a file named step_3 among the checkpoints", {}, {});
    c.files.push_back({"r/checkpoints/step_3", "not a checkpoint"});
    v.push_back(std::move(c));
  }
  {
    Case c = row("a checkpoint folder named past uint64", {}, {});
    c.files.push_back({"r/checkpoints/step_99999999999999999999/DONE", "ok\n"});
    v.push_back(std::move(c));
  }
  {
    Case c = row("the SFT checkpoint cut, no RL checkpoint",
                 {remove_path("{dir}/r/checkpoints"),
                  truncate_to("{dir}/r/sft/checkpoints/step_150/model.safetensors", 0.5)},
                 {"step_150"});
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("sft.checkpoint names a model whose weights are cut", k, "run {dir}/run2.toml", Expect::kError,
                    {"{dir}/r/sft/checkpoints/step_150"});
    c.files.push_back({"run2.toml", base_run().set("run.dir", "\"r2\"").set("sft.checkpoint",
                                                                            "\"r/sft/checkpoints/step_150\"").text()});
    c.prepare.push_back(truncate_to("{dir}/r/sft/checkpoints/step_150/model.safetensors", 0.5));
    v.push_back(std::move(c));
  }
  return v;
}

std::vector<Case> signal_cases() {
  std::vector<Case> v;
  const auto sft_progress = when_output("sft: step");
  const auto rl_progress = when_file_matches("{dir}/r/metrics.jsonl", "\"step\":[1-9]");
  const std::vector<File> long_sft_run = run_files(base_run().set("sft.steps", "2000"));
  const std::vector<File> long_rl = run_files(
      base_run().set("run.steps", "1000000").set("run.checkpoint_every", "1000000"));
  const std::vector<File> long_sft = sft_files(
      base_sft().set("train.steps", "2000").set("train.batch", "32").set("train.checkpoint_every", "1000000"));
  const std::string run = "run {dir}/run.toml", sft = "sft {dir}/sft.toml";
  {
    Case c = signal_row("run: SIGINT in the SFT stage checkpoints and exits 0", long_sft_run, run,
                        {{"sft: step in the output", sft_progress, 0, SIGINT}}, Expect::kOk);
    c.words = {"\"interrupted\":true"};
    // stopped in the SFT stage: it did not train to its end, and the RL stage never started
    c.post = {checkpoint_after_zero("{dir}/r/sft/checkpoints"), checkpoints_complete("{dir}/r/sft/checkpoints"),
              absent("{dir}/r/sft/checkpoints/step_2000"), absent("{dir}/r/checkpoints")};
    v.push_back(std::move(c));
  }
  {
    Case c = signal_row("run: SIGTERM in the SFT stage checkpoints and exits 0", long_sft_run, run,
                        {{"sft: step in the output", sft_progress, 0, SIGTERM}}, Expect::kOk);
    c.post = {checkpoint_after_zero("{dir}/r/sft/checkpoints"), absent("{dir}/r/sft/checkpoints/step_2000"),
              absent("{dir}/r/checkpoints")};
    v.push_back(std::move(c));
  }
  {
    Case c = signal_row("run: a second SIGINT 1 s later exits 130", long_sft_run, run,
                        {{"sft: step in the output", sft_progress, 0, SIGINT}, {"1 s later", nullptr, 1.0, SIGINT}},
                        Expect::kInterruptedOrOk);
    c.post = {exit_130_if_signals_sent(2), checkpoints_complete("{dir}/r/sft/checkpoints")};
    v.push_back(std::move(c));
  }
  {
    Case c = signal_row("run: two stop signals in the SFT stage exit 130", long_sft_run, run,
                        two_while_stopped(sft_progress, "sft: step in the output"), Expect::kInterrupted);
    c.post = {checkpoints_complete("{dir}/r/sft/checkpoints")};
    v.push_back(std::move(c));
  }
  {
    Case c = signal_row("run: SIGINT as the SFT stage starts exits 0", long_sft_run, run,
                        {{"SFT stage in the output", when_output("SFT stage"), 0, SIGINT}}, Expect::kOk);
    c.words = {"\"interrupted\":true"};
    c.post = {checkpoints_complete("{dir}/r/sft/checkpoints")};
    v.push_back(std::move(c));
  }
  {
    Case c = signal_row("sft: SIGINT checkpoints and exits 0", long_sft, sft,
                        {{"sft: step in the output", sft_progress, 0, SIGINT}}, Expect::kOk);
    c.words = {"\"interrupted\":true"};
    c.post = {checkpoint_after_zero("{dir}/out/checkpoints"), checkpoints_complete("{dir}/out/checkpoints")};
    v.push_back(std::move(c));
  }
  {
    Case c = signal_row("sft: SIGTERM checkpoints and exits 0", long_sft, sft,
                        {{"sft: step in the output", sft_progress, 0, SIGTERM}}, Expect::kOk);
    c.post = {checkpoint_after_zero("{dir}/out/checkpoints")};
    v.push_back(std::move(c));
  }
  {
    Case c = signal_row("sft: two stop signals exit 130", long_sft, sft,
                        two_while_stopped(sft_progress, "sft: step in the output"), Expect::kInterrupted);
    c.post = {checkpoints_complete("{dir}/out/checkpoints")};
    v.push_back(std::move(c));
  }
  for (int sig : {SIGINT, SIGTERM}) {
    auto at = std::make_shared<int64_t>(-1);
    Case c = signal_row(fmt::format("run: {} in RL checkpoints and stops within 50 steps", sig == SIGINT ? "SIGINT" : "SIGTERM"),
                        long_rl, run, {{"an RL step in metrics.jsonl", rl_step_recorded(at), 0, sig}}, Expect::kOk);
    c.words = {"\"interrupted\":true"};
    c.post = {checkpoint_after_zero("{dir}/r/checkpoints"), checkpoints_complete("{dir}/r/checkpoints"),
              stops_within_steps(at, 50)};
    c.timeout_s = 120;
    v.push_back(std::move(c));
  }
  {
    Case c = signal_row("run: a second SIGINT in RL 1 s later exits 130", long_rl, run,
                        {{"an RL step in metrics.jsonl", rl_progress, 0, SIGINT}, {"1 s later", nullptr, 1.0, SIGINT}},
                        Expect::kInterruptedOrOk);
    c.post = {exit_130_if_signals_sent(2), checkpoints_complete("{dir}/r/checkpoints")};
    v.push_back(std::move(c));
  }
  {
    Case c = signal_row("run: two stop signals in RL exit 130", long_rl, run,
                        two_while_stopped(rl_progress, "an RL step in metrics.jsonl"), Expect::kInterrupted);
    c.post = {checkpoints_complete("{dir}/r/checkpoints")};
    v.push_back(std::move(c));
  }
  return v;
}

std::vector<Case> corruption_cases() {
  const Kind k = Kind::kCorruption;
  std::vector<Case> v;
  for (const char* ext : {".sst", ".log"}) {  // a damaged table file; a damaged write-ahead log
    auto damaged = [&](std::string name, std::string args, Expect e, std::vector<std::string> words = {}) {
      Case c = on_run(fmt::format("damaged replay {}: {}", ext, name), k, std::move(args), e, std::move(words));
      if (std::string(ext) == ".sst") c.files = finished_run_files(base_run(), "r-sst");
      c.prepare.push_back(corrupt_replay(ext));
      return c;
    };
    v.push_back(damaged("replay check exits 1", "replay check {dir}/r", Expect::kError));
    v.push_back(damaged("replay stats fails", "replay stats {dir}/r", Expect::kNonZero));
    // ls reads only the groups' metadata: it may list them, or fail naming the damage
    v.push_back(damaged("replay ls lists or fails clearly", "replay ls {dir}/r", Expect::kOkOrError));
    v.push_back(damaged("replay export fails without --skip-damaged", "replay export {dir}/r --out {dir}/x.jsonl",
                        Expect::kNonZero));
    v.push_back(damaged("replay export --skip-damaged exports the rest",
                        "replay export {dir}/r --skip-damaged --out {dir}/x.jsonl", Expect::kOk));
    v.back().post = {present("{dir}/x.jsonl")};
    v.push_back(damaged("run refuses to resume and names replay check", "run {dir}/run.toml", Expect::kError,
                        {"replay check"}));
  }
  auto events = [&](std::string name, Prepare p) {
    Case c = on_run("events.log " + name, k, "run {dir}/run.toml", Expect::kOkOrError);
    c.prepare.push_back(std::move(p));
    return c;
  };
  v.push_back(events("with garbage bytes appended", append_bytes("{dir}/r/events.log", std::string("\x00\xff\x01garbage\x7f", 11))));
  v.push_back(events("cut mid-line", truncate_to("{dir}/r/events.log", 0.5)));
  v.push_back(events("with a publish past uint64", append_bytes("{dir}/r/events.log", "publish 99999999999999999999999 step 1\n")));
  v.push_back(events("with a publish of 2^64-1", append_bytes("{dir}/r/events.log", "publish 18446744073709551615 step 9\n")));
  v.push_back(events("emptied", truncate_to("{dir}/r/events.log", 0)));
  {
    Case c = events("is a folder", make_folder("{dir}/r/events.log"));
    c.expect = Expect::kError;
    c.words = {"events.log"};
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("incarnation not a number", k, "run {dir}/run.toml", Expect::kOkOrError);
    c.files.push_back({"r/incarnation", "abc\n"});
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("incarnation past uint64", k, "run {dir}/run.toml", Expect::kOkOrError);
    c.files.push_back({"r/incarnation", "99999999999999999999999\n"});
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("fingerprint.json garbage", k, "run {dir}/run.toml", Expect::kOkOrError);
    c.files.push_back({"r/fingerprint.json", "{\"format\": 7"});
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("the run's config.toml garbage", k, "run {dir}/run.toml", Expect::kOkOrError);
    c.files.push_back({"r/config.toml", "[run\nsteps = = 1\n"});
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("metrics.jsonl with a garbage line", k, "run {dir}/run.toml", Expect::kOkOrError);
    c.prepare.push_back(append_bytes("{dir}/r/metrics.jsonl", "{\"step\": \"x\", \"time_s\": [1]}\nnot json\n"));
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("replay stats on a folder that is not a run", k, "replay stats {dir}/notarun", Expect::kError,
                    {"not", "{dir}/notarun"});
    c.files = {{"notarun/.keep", ""}};
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("replay stats on a folder of other files", k, "replay stats {dir}/notarun", Expect::kError,
                    {"not", "{dir}/notarun"});
    c.files = {{"notarun/CURRENT", "hello\n"}, {"notarun/notes.txt", "x"}};
    v.push_back(std::move(c));
  }
  {
    Case c = on_run("replay check on a folder that is not a run", k, "replay check {dir}/notarun", Expect::kError,
                    {"{dir}/notarun"});
    c.files = {{"notarun/.keep", ""}};
    v.push_back(std::move(c));
  }
  return v;
}

}  // namespace m1::badinput
