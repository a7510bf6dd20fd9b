// Black-box tests of `m1rl replay` on damaged and non-run directories: `check` names the damage
// (exit 1), `export` refuses damage unless --skip-damaged and then writes every intact group and
// counts the skipped ones, `stats` reports damage with exit 1, a directory that is not a run gets
// one clear error naming it; and `m1rl run` refuses to resume on a damaged replay database.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <rocksdb/db.h>
#include <rocksdb/metadata.h>

#include "actors/replay/replay_store.h"
#include "base/file.h"
#include "tests/actors/replay_test_util.h"

using json = nlohmann::json;
using namespace m1;
using namespace m1::test;

namespace {

struct Run {
  int rc;
  std::string out;
};

// Runs m1rl with ARGS; OUT gets stdout, and stderr too unless STDOUT_ONLY.
Run m1rl(const std::string& args, bool stdout_only = false) {
  const std::string cmd = std::string(M1_BINARY) + " " + args + (stdout_only ? " 2>/dev/null" : " 2>&1");
  Run r{0, ""};
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

bool has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

// A fresh run directory per test, removed at the end.
struct RunDir {
  std::string path, replay;
  explicit RunDir(const std::string& name) {
    path = (std::filesystem::temp_directory_path() / ("m1-replay-damage-" + std::to_string(getpid()) + "-" + name))
               .string();
    remove_all(path);
    replay = path + "/replay";
  }
  ~RunDir() { remove_all(path); }
};

// N real groups (ids 1..N, seq = id) in DIR, flushed into table files; then WAL_ONLY more groups
// (ids N+1..), acknowledged with a synced write, only in the WAL.
void make_store(const std::string& dir, int n, int wal_only = 0) {
  {
    ReplayOptions o;
    o.sync = false;
    auto s = ReplayStore::open(dir, o);
    REQUIRE_MESSAGE(s.is_ok(), s.status().message());
    for (int i = 1; i <= n; i += 50) {
      std::vector<msg::Bytes> batch;
      for (int j = i; j < i + 50 && j <= n; ++j) batch.push_back(make_synthetic_group(uint64_t(j), "add", 1, 4, 8));
      REQUIRE((*s)->append(batch).is_ok());
    }
  }
  with_raw_db(dir, false, [](rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& hs, const auto&) {
    REQUIRE(db->Flush(rocksdb::FlushOptions(), hs).ok());
  });
  if (wal_only == 0) return;
  auto s = ReplayStore::open(dir, ReplayOptions());
  REQUIRE_MESSAGE(s.is_ok(), s.status().message());
  for (int i = n + 1; i <= n + wal_only; ++i)
    REQUIRE((*s)->append({make_synthetic_group(uint64_t(i), "add", 1, 4, 8)}).is_ok());
}

// The file name of the one live table file of column family CF.
std::string table_of(const std::string& dir, const std::string& cf) {
  std::string out;
  with_raw_db(dir, true, [&](rocksdb::DB* db, const auto&, const auto&) {
    std::vector<rocksdb::LiveFileMetaData> md;
    db->GetLiveFilesMetaData(&md);
    for (const auto& f : md)
      if (f.column_family_name == cf) out = f.name[0] == '/' ? f.name.substr(1) : f.name;
  });
  REQUIRE(!out.empty());
  return out;
}

std::vector<json> jsonl(const std::string& path) {
  auto text = read_file(path);
  REQUIRE(text.is_ok());
  std::vector<json> out;
  std::istringstream in(text.value());
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

}  // namespace

TEST_CASE("m1rl replay check/export/stats on an intact run: exit 0, everything exported") {
  RunDir d("intact");
  make_store(d.replay, 60, 5);
  Run r = m1rl("replay check " + d.path);
  CHECK_MESSAGE(r.rc == 0, r.out);
  CHECK(has(r.out, "ok: 65 groups, all intact"));
  r = m1rl("replay check " + d.path + " --json", true);
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  const json j = json::parse(r.out);
  CHECK(j.at("ok").get<bool>());
  CHECK(j.at("records").get<int>() == 65);
  CHECK(j.at("damaged").get<int>() == 0);
  CHECK(j.at("errors").empty());
  r = m1rl("replay export " + d.path + " --skip-damaged --out " + d.path + "/all.jsonl");
  CHECK_MESSAGE(r.rc == 0, r.out);
  CHECK(has(r.out, "65 groups exported, 0 damaged groups skipped"));
  CHECK(jsonl(d.path + "/all.jsonl").size() == 65);
  r = m1rl("replay stats " + d.path + " --json", true);
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  CHECK(json::parse(r.out).at("errors").empty());
  CHECK(verify_replay_db(d.replay).is_ok());
}

TEST_CASE("m1rl replay on a corrupt table block: check names it, export needs --skip-damaged, stats exits 1") {
  RunDir d("sst");
  make_store(d.replay, 200);
  const std::string sst = table_of(d.replay, replay::kCfGroups);
  corrupt_middle(d.replay + "/" + sst);

  Run r = m1rl("replay check " + d.path);
  CHECK_MESSAGE(r.rc == 1, r.out);
  CHECK(has(r.out, "DAMAGED"));
  CHECK(has(r.out, "SST " + sst + " (column family groups"));
  CHECK(has(r.out, "record unreadable: Corruption"));
  CHECK(has(r.out, "m1rl replay export " + d.path + " --skip-damaged --out FILE"));
  r = m1rl("replay check " + d.path + " --json", true);
  CHECK(r.rc == 1);
  const json j = json::parse(r.out);
  CHECK_FALSE(j.at("ok").get<bool>());
  const int records = j.at("records").get<int>(), damaged = j.at("damaged").get<int>();
  CHECK(records == 200);
  CHECK(damaged > 0);
  CHECK(damaged < 50);
  CHECK(j.at("intact").get<int>() == records - damaged);
  CHECK(j.at("errors").size() == 2);  // the table file, then the stretch of groups in its bad block

  // Without the flag: exit 1, nothing written, the damage and the flag named.
  const std::string out = d.path + "/export.jsonl";
  r = m1rl("replay export " + d.path + " --out " + out);
  CHECK(r.rc == 1);
  CHECK(has(r.out, "groups are damaged; nothing exported"));
  CHECK(has(r.out, "record unreadable"));
  CHECK(has(r.out, "--skip-damaged"));
  CHECK_FALSE(path_exists(out));
  // With it: every intact group, the damaged ones counted on stderr.
  r = m1rl("replay export " + d.path + " --out " + out + " --skip-damaged");
  CHECK_MESSAGE(r.rc == 0, r.out);
  CHECK(has(r.out, fmt::format("{} groups exported, {} damaged groups skipped", records - damaged, damaged)));
  const std::vector<json> lines = jsonl(out);
  CHECK(lines.size() == size_t(records - damaged));
  for (const json& g : lines) CHECK(g.at("integrity").get<std::string>() == "ok");

  r = m1rl("replay stats " + d.path);
  CHECK(r.rc == 1);
  CHECK(has(r.out, "error: SST " + sst));
  r = m1rl("replay stats " + d.path + " --json", true);
  CHECK(r.rc == 1);
  CHECK(!json::parse(r.out).at("errors").empty());
}

TEST_CASE("m1rl replay on a corrupt metadata block: the groups around it are exported") {
  RunDir d("meta");
  make_store(d.replay, 1000);
  corrupt_middle(d.replay + "/" + table_of(d.replay, replay::kCfMeta));
  Run r = m1rl("replay check " + d.path + " --json", true);
  CHECK(r.rc == 1);
  const json j = json::parse(r.out);
  const int damaged = j.at("damaged").get<int>();
  CHECK(damaged > 0);
  CHECK(damaged < 200);
  CHECK(j.at("records").get<int>() == 1000);
  const std::string out = d.path + "/export.jsonl";
  r = m1rl("replay export " + d.path + " --out " + out + " --skip-damaged");
  CHECK_MESSAGE(r.rc == 0, r.out);
  CHECK(has(r.out, "metadata unreadable"));
  const std::vector<json> lines = jsonl(out);
  CHECK(lines.size() == size_t(1000 - damaged));
  CHECK(lines.back().at("group_id").get<int>() == 1000);  // past the damage, to the end
  CHECK(m1rl("replay stats " + d.path).rc == 1);
}

TEST_CASE("m1rl replay on a corrupt WAL record: check names the log, export salvages with --skip-damaged") {
  RunDir d("wal");
  make_store(d.replay, 100, 50);
  const std::string wal_path = newest_wal(d.replay);
  const std::string wal = wal_path.substr(wal_path.rfind('/') + 1);
  corrupt_middle(wal_path);

  Run r = m1rl("replay check " + d.path);
  CHECK_MESSAGE(r.rc == 1, r.out);
  CHECK(has(r.out, "WAL DAMAGED"));
  CHECK(has(r.out, "WAL " + wal + ": offset "));
  r = m1rl("replay export " + d.path + " --out " + d.path + "/x.jsonl");
  CHECK(r.rc == 1);
  CHECK(has(r.out, "WAL " + wal));
  CHECK(has(r.out, "--skip-damaged"));
  CHECK_FALSE(path_exists(d.path + "/x.jsonl"));
  r = m1rl("replay export " + d.path + " --out " + d.path + "/x.jsonl --skip-damaged");
  CHECK_MESSAGE(r.rc == 0, r.out);
  CHECK(has(r.out, "damaged groups skipped"));
  const size_t n = jsonl(d.path + "/x.jsonl").size();
  CHECK(n >= 100);  // every flushed group and the WAL records the damage left readable
  CHECK(n < 150);
  r = m1rl("replay stats " + d.path);
  CHECK(r.rc == 1);
  CHECK(has(r.out, "WAL " + wal));
}

TEST_CASE("m1rl replay on a directory that is not a run: one clear error naming it, exit 1") {
  RunDir d("notrun");
  REQUIRE(make_dirs(d.path + "/empty").is_ok());
  REQUIRE(write_file(d.path + "/file", "x").is_ok());
  REQUIRE(make_dirs(d.path + "/noreplay/replay").is_ok());  // replay/ without a database
  for (const std::string& dir : {d.path + "/empty", d.path + "/file", d.path + "/missing", d.path + "/noreplay"}) {
    for (const std::string& cmd : std::vector<std::string>{"stats", "ls", "check", "export", "tail", "show"}) {
      const Run r = m1rl("replay " + cmd + " " + dir + (cmd == "show" ? " 1" : ""));
      INFO(cmd << " " << dir << ": " << r.out);
      CHECK(r.rc == 1);
      CHECK(has(r.out, dir + ": not an m1rl run directory ("));
      CHECK_FALSE(has(r.out, "IO error"));
    }
  }
  CHECK(m1rl("replay check").rc == 2);  // bad usage
}

TEST_CASE("m1rl run refuses to resume on a damaged replay database and names the salvage commands") {
  // The crash test's run config (a 60-step SFT stage on `tiny`, about a second), model path made absolute.
  auto cfg = read_file(std::string(M1_SOURCE_DIR) + "/configs/test-crash.toml");
  REQUIRE(cfg.is_ok());
  std::string text = cfg.value();
  const std::string model = "config = \"models/tiny.json\"";
  REQUIRE(has(text, model));
  text.replace(text.find(model), model.size(), "config = \"" + std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json\"");
  for (const bool wal : {false, true}) {
    RunDir d(wal ? "run-wal" : "run-sst");
    REQUIRE(make_dirs(d.path).is_ok());
    REQUIRE(write_file(d.path + "/run.toml", text).is_ok());
    make_store(d.replay, 100, wal ? 30 : 0);
    const std::string path = wal ? newest_wal(d.replay) : d.replay + "/" + table_of(d.replay, replay::kCfGroups);
    const std::string file = path.substr(path.rfind('/') + 1);
    corrupt_middle(path);
    const Status v = verify_replay_db(d.replay);
    REQUIRE(!v.is_ok());
    CHECK(has(v.message(), "replay " + d.replay + ": the replay database fails RocksDB's own check"));
    CHECK(has(v.message(), file));

    const Run r = m1rl("run " + d.path + "/run.toml --run-dir " + d.path);
    INFO(r.out);
    CHECK(r.rc == 1);
    CHECK(has(r.out, "m1rl: error: replay " + d.replay + ": the replay database fails RocksDB's own check"));
    CHECK(has(r.out, (wal ? "WAL " : "SST ") + file));
    CHECK(has(r.out, "m1rl replay check " + d.path + "\n"));
    CHECK(has(r.out, "m1rl replay export " + d.path + " --skip-damaged --out FILE"));
    CHECK_FALSE(path_exists(d.path + "/checkpoints/step_1"));
  }
}
