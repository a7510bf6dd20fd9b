// Replay append benchmark and the synthetic groups it (and the tests) use.
#include <algorithm>
#include <chrono>

#include "actors/replay/replay_store.h"
#include "base/file.h"
#include "base/log.h"

namespace m1 {

msg::Bytes make_synthetic_group(uint64_t group_id, const std::string& task, uint64_t version, int rollouts,
                                int tokens, float reward_mean) {
  flatbuffers::FlatBufferBuilder b(1024 + size_t(rollouts) * size_t(tokens) * 20);
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<int32_t> toks(static_cast<size_t>(tokens));
  std::vector<float> lps(size_t(tokens), -0.5f);
  const std::vector<uint64_t> vers(size_t(tokens), version);
  std::vector<flatbuffers::Offset<msg::RolloutData>> rs;
  for (int i = 0; i < rollouts; ++i) {
    for (int t = 0; t < tokens; ++t) toks[size_t(t)] = int32_t((group_id * 31 + uint64_t(i) * 7 + uint64_t(t)) % 97);
    const uint64_t judge = 1;
    auto prov = msg::CreateProvenance(b, group_id, b.CreateString(task), b.CreateString("builtin"), 1,
                                      b.CreateVector(&judge, 1), 42 + uint64_t(i));
    rs.push_back(msg::CreateRolloutDataDirect(b, group_id * 1000 + uint64_t(i) + 1, group_id, uint32_t(i), &prompt,
                                              &toks, &lps, &vers, msg::FinishReason::Eos, prov, float(i % 2), 1.0f,
                                              0.0f, "ok"));
  }
  auto env = msg::CreateEnvelope(b, 1, 1, group_id);
  auto root = msg::CreateJudgedGroup(b, env, group_id, group_id, b.CreateString(task), b.CreateString("1+1="),
                                     b.CreateString("2"), b.CreateVector(rs), reward_mean, 0.5f,
                                     1700000000000ull + group_id);
  msg::FinishJudgedGroupBuffer(b, root);
  return msg::Bytes::from_builder(b);
}

Result<ReplayBenchResult> bench_replay_append(const std::string& dir, int groups, int per_commit, int rollouts,
                                              int tokens) {
  if (groups < 1 || per_commit < 1 || rollouts < 1 || tokens < 0)
    return Status::errorf("bench replay: need groups, per_commit, rollouts ≥ 1 (got {}, {}, {})", groups, per_commit,
                          rollouts);
  if (path_exists(dir)) return Status::errorf("bench replay: {} exists; give a path that does not", dir);
  std::vector<msg::Bytes> all;
  all.reserve(size_t(groups));
  double bytes = 0;
  for (int i = 0; i < groups; ++i) {
    all.push_back(make_synthetic_group(uint64_t(i) + 1, "add", 1, rollouts, tokens));
    bytes += double(all.back().size());
  }
  ReplayBenchResult r;
  {
    ReplayOptions o;
    o.sync = true;
    M1_ASSIGN_OR_RETURN(auto store, ReplayStore::open(dir, o));
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < groups; i += per_commit) {
      const int end = std::min(groups, i + per_commit);
      std::vector<msg::Bytes> chunk(all.begin() + i, all.begin() + end);
      M1_ASSIGN_OR_RETURN(auto res, store->append(chunk));
      if (res.appended != size_t(end - i)) return Status::errorf("bench replay: appended {} of {}", res.appended, end - i);
      r.commits++;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.groups_per_s = double(groups) / s;
    r.mb_per_s = bytes / 1e6 / s;
    r.bytes_per_group = bytes / double(groups);
  }
  M1_RETURN_IF_ERROR(remove_all(dir));
  return r;
}

double bench_append_groups_per_s(const std::string& dir, int groups, int per_commit) {
  auto r = bench_replay_append(dir, groups, per_commit);
  if (!r) {
    log_error("{}", r.status().message());
    return -1;
  }
  return r->groups_per_s;
}

}  // namespace m1
