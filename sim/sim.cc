// The deterministic simulation: see sim/sim.h. The loop below owns the simulated clock (CAF's
// test coordinator), the transport, the nodes and the fault schedule; the actors are the product's.
#include "sim/sim.h"

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "actors/pipeline/actors.h"
#include "actors/pipeline/wire.h"
#include "base/file.h"
#include "base/planted.h"
#include "cluster/loopback_transport.h"
#include "cluster/node.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/tokenizer.h"

namespace m1::sim {

namespace {

using cluster::NodeId;
using json = nlohmann::json;

// The tiny model of the unit tests (configs/models/tiny.json), built in so `m1rl sim` needs no file.
constexpr const char* kTinyModel = R"({"attn_type_list": [0, 1], "block_size": 16, "head_dim": 8,
  "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 32,
  "layernorm_full_attention_alpha": 1.4142135623730951, "layernorm_full_attention_beta": 1.0,
  "layernorm_linear_attention_alpha": 1.4142135623730951, "layernorm_linear_attention_beta": 1.0,
  "layernorm_mlp_alpha": 1.4142135623730951, "layernorm_mlp_beta": 1.0, "num_attention_heads": 4,
  "num_experts_per_tok": 2, "num_hidden_layers": 2, "num_key_value_heads": 2, "num_local_experts": 4,
  "postnorm": true, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "rotary_dim": 4,
  "router_aux_loss_coef": 0.01, "tie_word_embeddings": false, "vocab_size": 263})";

constexpr uint64_t kSamplerId = 0x5a0001;
constexpr NodeId kCoreNode = 1;
constexpr int64_t kLimitUs = int64_t(1800) * 1000000;  // simulated time allowed to reach the steps (a run
                                                      // without a stall needs under 300 s)
constexpr int64_t kRestartAfterUs = 15'000'000;             // a crashed generator node is back 15 s later

int64_t to_us(caf::actor_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull; }

// What the sim-owned actors (drivers, the replay gate) report to the loop.
struct Shared {
  uint64_t current_epoch = 0;  // the learner incarnation the loop considers live
  uint64_t step = 0;           // the live learner's last reported step
  bool done = false;
  bool live_failed = false;
  std::string failure;
  // The learner lineage, in order: a commit request (epoch, step, ids), or a restart (epoch e
  // resumed from checkpoint step c: every step > c is rolled back).
  struct Event {
    bool restart = false;
    uint64_t epoch = 0, step = 0;
    std::vector<uint64_t> ids;
  };
  std::vector<Event> lineage;
  // Decisions for the live learner's next commit (set by the loop from the seed, by progress).
  std::set<uint64_t> fail_commit_at;   // steps whose commit replay refuses (injected)
  std::set<uint64_t> crash_after_commit_at;  // steps after whose durable commit the learner dies
  std::set<uint64_t> zombie_after_commit_at; // ... is superseded but left running
  uint64_t commit_failures = 0;
  bool crash_now = false, zombie_now = false;
};

// Between the learners and replay on node 1: passes takes and releases, records each commit in the
// lineage, refuses the ones the fault schedule says (as a full disk would), and marks the learner
// for a crash (or for being superseded) once the commit the schedule names is durable.
caf::behavior replay_gate(caf::event_based_actor* self, caf::actor replay, std::shared_ptr<Shared> sh) {
  auto sender = std::make_shared<wire::Sender>(wire::Sender{pipe::kReplayId, 1, 0});
  return {
      [=](pipe::take_atom a, uint64_t n, uint64_t version, uint64_t epoch) {
        return self->delegate(replay, a, n, version, epoch);
      },
      [=](pipe::release_atom a, uint64_t epoch) { self->send(replay, a, epoch); },
      [=](pipe::commit_atom a, const std::vector<uint64_t>& ids, uint64_t step, uint64_t version,
          uint64_t epoch) -> caf::result<msg::Bytes> {
        sh->lineage.push_back({false, epoch, step, ids});
        const bool live = epoch == sh->current_epoch;
        if (live && sh->fail_commit_at.erase(step)) {
          ++sh->commit_failures;
          return wire::commit_result(*sender, step, false, "injected: the replay disk is full");
        }
        auto rp = self->make_response_promise<msg::Bytes>();
        self->request(replay, std::chrono::seconds(60), a, ids, step, version, epoch)
            .then([=](const msg::Bytes& r) mutable {
              auto d = msg::decode<msg::CommitResult>(r);
              const bool ok = d.is_ok() && d.value()->ok();
              if (live && ok && epoch == sh->current_epoch) {
                if (sh->crash_after_commit_at.erase(step)) {
                  // It dies now: the loop kills it. The exit does not reach an actor awaiting a
                  // response (CAF 0.17's await holds all other mail), so the reply it awaits is an
                  // error: it stops there, before its checkpoint and publish, as a crash would.
                  sh->crash_now = true;
                  rp.deliver(caf::make_error(caf::sec::request_receiver_down, "simulated learner crash"));
                  return;
                }
                if (sh->zombie_after_commit_at.erase(step)) sh->zombie_now = true;
              }
              rp.deliver(r);
            },
            [=](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
      },
  };
}

// A learner incarnation's driver: step records, done and failure, tagged with its epoch.
caf::behavior learner_driver(caf::event_based_actor*, std::shared_ptr<Shared> sh, uint64_t epoch) {
  return {
      [=](pipe::step_atom, const std::string& rec) {
        if (epoch != sh->current_epoch) return;
        json j = json::parse(rec, nullptr, false);
        if (j.is_object() && j.contains("step") && j["step"].is_number_unsigned())
          sh->step = std::max(sh->step, j["step"].get<uint64_t>());
      },
      [=](pipe::done_atom, uint64_t) {
        if (epoch == sh->current_epoch) sh->done = true;
      },
      [=](pipe::fail_atom, const std::string& why) {
        if (epoch != sh->current_epoch) return;  // a superseded learner stopped: expected
        sh->live_failed = true;
        sh->failure = why;
      },
  };
}

class Simulation {
 public:
  Simulation(const SimOptions& o, std::string dir) : o_(o), dir_(std::move(dir)), rng_(o.seed * 0x9e3779b97f4a7c15ull + 1) {}
  Result<SimResult> run();

 private:
  int64_t now_us() const { return to_us(sched_->clock().now()); }
  Status setup();
  void spawn_generator_node(NodeId n);
  void crash_generator_node(NodeId n);
  Status start_learner(bool resume);
  void kill(const caf::actor& a) {
    if (a) caf::anon_send_exit(a, caf::exit_reason::kill);
  }
  void schedule_faults();
  // Folds a delivered frame into the trace: its time and header (payloads hold wall-clock fields,
  // such as Metrics.unix_ms, that differ between runs).
  void trace(const msg::Bytes& f) {
    auto d = msg::decode<msg::Frame>(f);
    trace_ = mix(trace_, uint64_t(now_us()));
    if (!d.is_ok()) return;
    const msg::Frame& fr = *d.value();
    for (uint64_t v : {fr.source(), fr.destination(), fr.source_node(), fr.incarnation(), fr.seq(), fr.request_id(),
                       uint64_t(fr.kind()), uint64_t(fr.payloads() ? fr.payloads()->size() : 0)})
      trace_ = mix(trace_, v);
  }
  void on_progress();
  std::vector<std::string> check_invariants();

  SimOptions o_;
  std::string dir_;
  cluster::SimRng rng_;
  RunConfig c_;
  std::unique_ptr<caf::actor_system_config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::scheduler::test_coordinator* sched_ = nullptr;
  std::unique_ptr<cluster::LoopbackTransport> net_;
  std::shared_ptr<Shared> sh_ = std::make_shared<Shared>();
  std::shared_ptr<pipe::RejectCounters> rejects_ = std::make_shared<pipe::RejectCounters>();
  std::shared_ptr<ReplayStore> store_;
  std::shared_ptr<EventLog> events_;
  std::unique_ptr<Model> model0_;
  std::vector<caf::actor> all_;  // every actor spawned, stopped at the end
  caf::actor ep_core_, replay_, gate_, sampler_, evaluator_, learner_, sampler_proxy_;
  std::vector<caf::actor> gen_proxies_, judge_proxies_;
  struct GenNode {
    uint64_t incarnation = 0;
    bool up = false;
    caf::actor endpoint, generator, judge, sampler_proxy;
    std::shared_ptr<cluster::NodeCounters> counters = std::make_shared<cluster::NodeCounters>();
  };
  std::map<NodeId, GenNode> gens_;
  std::shared_ptr<cluster::NodeCounters> core_counters_ = std::make_shared<cluster::NodeCounters>();
  std::vector<caf::actor> zombies_;
  // Fault schedule, by learner progress: at step → action.
  struct Pending {
    int64_t at_us;  // for restarts and heals: simulated time
    int kind;       // 0 restart node, 1 heal
    NodeId node;
  };
  std::multimap<uint64_t, std::pair<int, NodeId>> at_step_;  // step → (0 crash node, 1 partition node)
  std::vector<Pending> timed_;
  uint64_t trace_ = 0xcbf29ce484222325ull;
  uint64_t learner_epoch_ = 0;
  SimResult res_;
};

Status Simulation::setup() {
  c_.run_dir = dir_;
  c_.seed = o_.seed;
  c_.steps = o_.steps;
  c_.checkpoint_every = 1;
  c_.eval_every = 0;
  c_.eval_examples = 2;
  c_.tasks = {"add"};
  c_.group_size = 2;
  c_.batch_groups = 2;
  c_.max_new = 6;
  c_.generators = o_.nodes - 1;
  c_.judges = o_.nodes - 1;
  c_.generator_batch = 4;
  c_.lookahead = 2;
  c_.quiet = true;
  // A random tiny model never solves a prompt: every group has equal rewards. Kept (advantage 0),
  // they still flow through every actor, which is what the simulation checks.
  c_.dynamic_sampling = false;
  M1_RETURN_IF_ERROR(make_dirs(dir_));
  M1_ASSIGN_OR_RETURN(ModelConfig mc, parse_model_config(kTinyModel, "the simulation's tiny model"));
  model0_ = std::make_unique<Model>(mc);
  model0_->init_random(o_.seed);
  ReplayOptions ro;
  ro.max_staleness = uint64_t(c_.max_staleness);
  ro.sync = false;  // the simulation checks logic, not the disk
  M1_ASSIGN_OR_RETURN(std::unique_ptr<ReplayStore> st, ReplayStore::open(path_join(dir_, "replay"), ro));
  store_ = std::move(st);
  events_ = std::make_shared<EventLog>();
  M1_RETURN_IF_ERROR(events_->open(path_join(dir_, "events.log")));

  cfg_ = std::make_unique<caf::actor_system_config>();
  cfg_->set("scheduler.policy", caf::atom("testing"));
  cfg_->set("logger.verbosity", caf::atom("quiet"));
  sys_ = std::make_unique<caf::actor_system>(*cfg_);
  sched_ = &dynamic_cast<caf::scheduler::test_coordinator&>(sys_->scheduler());
  net_ = std::make_unique<cluster::LoopbackTransport>(o_.seed, [this] { return now_us(); });
  net_->set_faults({o_.faults.drop, o_.faults.duplicate, o_.faults.min_delay_us, o_.faults.max_delay_us});
  if (o_.faults.slow_generator && o_.nodes > 2) net_->set_slow(2, 20);

  // Node 1: replay, the gate, sampler, evaluator, learner; proxies for every remote generator/judge.
  ep_core_ = sys_->spawn(cluster::endpoint_actor, cluster::EndpointArgs{net_.get(), kCoreNode, 1, core_counters_});
  all_.push_back(ep_core_);
  caf::actor ep = ep_core_;
  M1_RETURN_IF_ERROR(net_->attach(kCoreNode, [this, ep](const msg::Bytes& f) {
    trace(f);
    caf::anon_send(ep, cluster::frame_atom::value, f);
  }));
  replay_ = sys_->spawn(pipe::replay_actor, pipe::ReplayArgs{store_, rejects_, 1});
  gate_ = sys_->spawn(replay_gate, replay_, sh_);
  all_.insert(all_.end(), {replay_, gate_});
  for (int i = 0; i < o_.nodes - 1; ++i) {
    const NodeId n = NodeId(i + 2);
    for (uint64_t id : {pipe::generator_id(size_t(i)), pipe::judge_id(size_t(i))})
      caf::anon_send(ep_core_, cluster::route_atom::value, id, n);
    gen_proxies_.push_back(sys_->spawn(cluster::proxy_actor, ep_core_, pipe::generator_id(size_t(i))));
    judge_proxies_.push_back(sys_->spawn(cluster::proxy_actor, ep_core_, pipe::judge_id(size_t(i))));
    all_.push_back(gen_proxies_.back());
    all_.push_back(judge_proxies_.back());
  }
  pipe::SamplerArgs sa;
  sa.cfg = c_;
  sa.generators = gen_proxies_;
  sa.judges = judge_proxies_;
  sa.replay = replay_;
  sa.incarnation = 1;
  sa.start_version = 0;
  sa.rejects = rejects_;
  sa.events = events_;
  sa.leases.floor_ms = 20000;  // simulated time: decoding costs none of it
  sa.leases.token_allowance_ms = 50;
  sampler_ = sys_->spawn(pipe::sampler_actor, sa);
  caf::anon_send(ep_core_, cluster::register_atom::value, kSamplerId, sampler_);
  evaluator_ = sys_->spawn(pipe::evaluator_actor,
                           pipe::EvaluatorArgs{c_, std::make_shared<Model>(*model0_), 0, rejects_, 0, 1});
  all_.insert(all_.end(), {sampler_, evaluator_});
  for (int i = 0; i < o_.nodes - 1; ++i) spawn_generator_node(NodeId(i + 2));
  M1_RETURN_IF_ERROR(start_learner(false));
  caf::anon_send(sampler_, pipe::start_atom::value);
  return Status::ok();
}

void Simulation::spawn_generator_node(NodeId n) {
  GenNode& g = gens_[n];
  g.incarnation += 1;
  g.up = true;
  const size_t i = size_t(n - 2);
  g.endpoint = sys_->spawn(cluster::endpoint_actor, cluster::EndpointArgs{net_.get(), n, g.incarnation, g.counters});
  g.sampler_proxy = sys_->spawn(cluster::proxy_actor, g.endpoint, kSamplerId);
  caf::anon_send(g.endpoint, cluster::route_atom::value, kSamplerId, kCoreNode);
  ByteTokenizer tok;
  // A (re)started generator holds the initial weights (version 0) until the learner's next publish;
  // requests for a newer version wait in it (min_version).
  auto logic = std::make_shared<GeneratorLogic>(*model0_, 0, c_.generator_batch, tok.eos_id(),
                                                RepetitionStop{c_.repetition_n, c_.repetition_p});
  g.generator = sys_->spawn(pipe::generator_actor,
                            pipe::GeneratorArgs{logic, g.sampler_proxy, pipe::generator_id(i), g.incarnation, rejects_});
  g.judge = sys_->spawn(pipe::judge_actor, pipe::JudgeArgs{pipe::judge_id(i), g.incarnation, 0, rejects_});
  caf::anon_send(g.endpoint, cluster::register_atom::value, pipe::generator_id(i), g.generator);
  caf::anon_send(g.endpoint, cluster::register_atom::value, pipe::judge_id(i), g.judge);
  all_.insert(all_.end(), {g.endpoint, g.sampler_proxy, g.generator, g.judge});
  caf::actor ep = g.endpoint;
  (void)net_->attach(n, [this, ep](const msg::Bytes& f) {
    trace(f);
    caf::anon_send(ep, cluster::frame_atom::value, f);
  });
}

void Simulation::crash_generator_node(NodeId n) {
  GenNode& g = gens_[n];
  if (!g.up) return;
  g.up = false;
  net_->detach(n);
  net_->purge(n);
  for (auto& a : {g.endpoint, g.sampler_proxy, g.generator, g.judge}) kill(a);
  caf::anon_send(ep_core_, cluster::node_down_atom::value, n);
  ++res_.crashes;
  timed_.push_back({now_us() + kRestartAfterUs, 0, n});
}

// A learner incarnation: RESUME = from the newest checkpoint, with replay rolled back to it (as
// `m1rl run` does after a crash) and versions past every one published before.
Status Simulation::start_learner(bool resume) {
  LearnerConfig lc;
  lc.seed = o_.seed;
  auto logic = std::make_shared<LearnerLogic>(*model0_, lc);
  uint64_t from = 0;
  if (resume) {
    CheckpointRef ck = latest_checkpoint(path_join(dir_, "checkpoints"));
    if (ck.step >= 0) {
      M1_RETURN_IF_ERROR(logic->load(ck.dir));
      from = uint64_t(ck.step);
    }
    M1_RETURN_IF_ERROR(store_->rollback_after(from).status());
    uint64_t seen = store_->counters().published_version;
    if (auto st = store_->stats(); st.is_ok()) seen = std::max(seen, st->max_version);
    if (seen >= logic->version()) logic->advance_version_to(seen + 1);
    ++res_.learner_restarts;
  }
  ++learner_epoch_;
  sh_->current_epoch = learner_epoch_;
  sh_->step = logic->step();
  sh_->live_failed = false;
  sh_->lineage.push_back({true, learner_epoch_, from, {}});
  auto driver = sys_->spawn(learner_driver, sh_, learner_epoch_);
  pipe::LearnerArgs la{c_, logic, gate_, sampler_, driver, evaluator_, gen_proxies_, learner_epoch_, 0, rejects_, events_};
  learner_ = sys_->spawn(pipe::learner_actor, la);
  all_.insert(all_.end(), {driver, learner_});
  caf::anon_send(sampler_, pipe::membership_atom::value, learner_);
  caf::anon_send(learner_, pipe::train_atom::value);
  return Status::ok();
}

// Crashes and partitions at seeded learner steps (progress, not time); commit failures and learner
// crashes decided per step from the seed.
void Simulation::schedule_faults() {
  const uint64_t S = uint64_t(std::max(1, o_.steps));
  const int gen_nodes = o_.nodes - 1;
  for (int i = 0; i < o_.faults.crashes && gen_nodes > 0; ++i)
    at_step_.emplace(uint64_t(rng_.between(0, int64_t(S - 1))), std::make_pair(0, NodeId(2 + rng_.next() % gen_nodes)));
  for (int i = 0; i < o_.faults.partitions && gen_nodes > 0; ++i)
    at_step_.emplace(uint64_t(rng_.between(0, int64_t(S - 1))), std::make_pair(1, NodeId(2 + rng_.next() % gen_nodes)));
  for (uint64_t s = 1; s <= S; ++s) {
    if (rng_.chance(o_.faults.commit_failure)) sh_->fail_commit_at.insert(s);
    if (rng_.chance(o_.faults.learner_crash))
      (rng_.chance(0.5) ? sh_->crash_after_commit_at : sh_->zombie_after_commit_at).insert(s);
  }
}

void Simulation::on_progress() {
  for (auto it = at_step_.begin(); it != at_step_.end() && it->first <= sh_->step;) {
    const auto [kind, node] = it->second;
    if (kind == 0) {
      crash_generator_node(node);
    } else {
      net_->partition(kCoreNode, node);
      ++res_.partitions;
      timed_.push_back({now_us() + rng_.between(5'000'000, 60'000'000), 1, node});
    }
    it = at_step_.erase(it);
  }
  for (size_t i = 0; i < timed_.size();) {
    if (timed_[i].at_us > now_us()) {
      ++i;
      continue;
    }
    if (timed_[i].kind == 0) spawn_generator_node(timed_[i].node);
    else net_->heal();
    timed_.erase(timed_.begin() + long(i));
  }
}

std::vector<std::string> Simulation::check_invariants() {
  std::vector<std::string> v;
  // acked: every group acknowledged to the sampler is in the store.
  auto text = read_file(path_join(dir_, "events.log"));
  std::vector<uint64_t> publishes;
  if (text.is_ok()) {
    size_t p = 0;
    const std::string& t = text.value();
    while (p < t.size()) {
      size_t e = t.find('\n', p);
      if (e == std::string::npos) e = t.size();
      const std::string line = t.substr(p, e - p);
      p = e + 1;
      if (line.rfind("ack ", 0) == 0) {
        const uint64_t id = std::strtoull(line.c_str() + 4, nullptr, 10);
        if (!store_->get(id).is_ok()) v.push_back(fmt::format("acked: group {} was acknowledged but is not in replay", id));
      } else if (line.rfind("publish ", 0) == 0) {
        publishes.push_back(std::strtoull(line.c_str() + 8, nullptr, 10));
      }
    }
  }
  // versions: strictly increasing over every publish of every incarnation.
  for (size_t i = 1; i < publishes.size(); ++i)
    if (publishes[i] <= publishes[i - 1]) {
      v.push_back(fmt::format("versions: version {} published after {}", publishes[i], publishes[i - 1]));
      break;
    }
  // max_uses: the surviving lineage trains each group at most max_uses times, and every group
  // replay counts as consumed was trained by a surviving step.
  std::map<uint64_t, std::vector<uint64_t>> steps;  // surviving step → ids
  uint64_t epoch = 0;
  for (const Shared::Event& e : sh_->lineage) {
    if (e.restart) {
      epoch = e.epoch;
      steps.erase(steps.upper_bound(e.step), steps.end());
    } else if (e.epoch == epoch) {
      steps[e.step] = e.ids;
    }
  }
  std::map<uint64_t, int> uses;
  for (const auto& [s, ids] : steps)
    for (uint64_t id : ids) ++uses[id];
  for (const auto& [id, n] : uses)
    if (n > 1) {
      v.push_back(fmt::format("max_uses: group {} trained by {} surviving learner steps (max_uses 1)", id, n));
      break;
    }
  // groups: every stored group holds group_size rollouts, one per index, each a distinct request
  // (the sampler's request-id dedupe keeps a rollout answered twice out of its group).
  ReplayFilter all;
  all.limit = 0;
  Status gs = store_->for_each(all, [&](const ReplayGroup& g) {
    auto d = msg::decode<msg::JudgedGroup>(g.bytes);
    if (!d.is_ok()) {
      v.push_back(fmt::format("groups: group {} does not decode: {}", g.meta.group_id, d.status().message()));
      return false;
    }
    std::set<uint32_t> idx;
    std::set<uint64_t> ids;
    const auto* rs = d.value()->rollouts();
    for (const msg::RolloutData* r : *rs) {
      idx.insert(r->index());
      ids.insert(r->rollout_id());
    }
    if (rs->size() != uint32_t(c_.group_size) || idx.size() != rs->size() || ids.size() != rs->size()) {
      v.push_back(fmt::format("groups: group {} holds {} rollouts, {} distinct indices, {} distinct requests "
                              "(group_size {})", g.meta.group_id, rs->size(), idx.size(), ids.size(), c_.group_size));
      return false;
    }
    return true;
  });
  if (!gs.is_ok()) v.push_back("replay: " + gs.message());
  // trained: every group a surviving step trained is consumed in replay (max_uses 1): a step that
  // trained on groups whose consumption is not durable must not survive.
  for (const auto& [id, n] : uses) {
    auto g = store_->get(id);
    if (!g.is_ok() || g->meta.status != msg::GroupStatus::Consumed) {
      v.push_back(fmt::format("trained: group {} was trained by a surviving learner step but is {} in replay", id,
                              g.is_ok() ? msg::EnumNameGroupStatus(g->meta.status) : g.status().message()));
      break;
    }
  }
  ReplayFilter f;
  f.limit = 0;
  f.status = msg::GroupStatus::Consumed;
  Status fs = store_->for_each(f, [&](const ReplayGroup& g) {
    if (!uses.count(g.meta.group_id)) {
      v.push_back(fmt::format("consumed: group {} is consumed in replay but no surviving learner step trained it",
                              g.meta.group_id));
      return false;
    }
    return true;
  });
  if (!fs.is_ok()) v.push_back("replay: " + fs.message());
  if (!sh_->done) v.push_back(fmt::format("progress: the learner reached step {} of {} in {:.0f} simulated s{}", sh_->step,
                                          o_.steps, now_us() / 1e6, sh_->failure.empty() ? "" : " (" + sh_->failure + ")"));
  return v;
}

Result<SimResult> Simulation::run() {
  M1_RETURN_IF_ERROR(setup());
  schedule_faults();
  auto& pb = planted_bugs();
  pb.dedupe_off = o_.planted == PlantedBug::kDedupeOff;
  pb.fencing_off = o_.planted == PlantedBug::kFencingOff;
  pb.commit_failure_ignored = o_.planted == PlantedBug::kCommitFailureIgnored;
  const bool debug = std::getenv("M1_SIM_DEBUG") != nullptr;
  for (uint64_t iter = 0;; ++iter) {
    if (debug && iter % 1000 == 0)
      std::fprintf(stderr, "sim: iter %llu t=%.3f s step %llu in flight %zu timers %zu jobs %d\n",
                   (unsigned long long)iter, now_us() / 1e6, (unsigned long long)sh_->step, net_->in_flight(),
                   sched_->clock().schedule().size(), int(sched_->has_job()));
    sched_->run();
    if (sh_->crash_now || sh_->zombie_now || sh_->live_failed) {
      if (debug && sh_->live_failed) std::fprintf(stderr, "sim: learner %llu failed: %s\n",
                                                  (unsigned long long)learner_epoch_, sh_->failure.c_str());
      if (debug)
        std::fprintf(stderr, "sim: t=%.3f learner %llu %s at step %llu\n", now_us() / 1e6,
                     (unsigned long long)learner_epoch_,
                     sh_->crash_now ? "crashes" : sh_->zombie_now ? "is superseded" : "failed",
                     (unsigned long long)sh_->step);
      if (sh_->crash_now || sh_->live_failed) kill(learner_);
      else zombies_.push_back(learner_);  // superseded, still running: fencing must stop it
      sh_->crash_now = sh_->zombie_now = false;
      M1_RETURN_IF_ERROR(start_learner(true));
      continue;
    }
    if (sh_->done || now_us() > kLimitUs) break;
    on_progress();
    if (net_->deliver_due()) continue;
    int64_t next = kLimitUs + 1;
    if (auto d = net_->next_due()) next = std::min(next, *d);
    const auto& sch = sched_->clock().schedule();
    if (!sch.empty()) next = std::min(next, to_us(sch.begin()->first));
    for (const Pending& p : timed_) next = std::min(next, p.at_us);
    if (sched_->has_job()) continue;
    if (debug && iter % 1000 == 0)
      std::fprintf(stderr, "sim:   next %lld now %lld first timer %lld\n", (long long)next, (long long)now_us(),
                   sch.empty() ? -1LL : (long long)to_us(sch.begin()->first));
    if (next <= now_us()) next = now_us() + 1;
    sched_->advance_time(std::chrono::microseconds(next - now_us()));
  }
  pb.dedupe_off = pb.fencing_off = pb.commit_failure_ignored = false;
  res_.violations = check_invariants();
  res_.ok = res_.violations.empty();
  res_.learner_step = sh_->step;
  res_.commit_failures = int(sh_->commit_failures);
  res_.sim_seconds = now_us() / 1e6;
  const auto& ns = net_->stats();
  res_.frames = ns.sent;
  res_.dropped = ns.dropped + ns.partitioned + ns.undeliverable + ns.purged;
  res_.duplicated = ns.duplicated;
  res_.duplicates_filtered = core_counters_->duplicates;
  for (auto& [n, g] : gens_) res_.duplicates_filtered += g.counters->duplicates;
  res_.trace_hash = mix(trace_, res_.learner_step);
  for (auto& a : all_) kill(a);
  for (auto& a : zombies_) kill(a);
  sched_->run();
  return res_;
}

}  // namespace

Result<SimResult> run_simulation(const SimOptions& o) {
  if (o.nodes < 2 || o.nodes > 64) return Status::errorf("--nodes {}: expected 2..64", o.nodes);
  if (o.steps < 1 || o.steps > 1000) return Status::errorf("--steps {}: expected 1..1000", o.steps);
  std::string dir = o.work_dir;
  const bool temp = dir.empty();
  if (temp)
    dir = (std::filesystem::temp_directory_path() / fmt::format("m1-sim-{}-{}", getpid(), o.seed)).string();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  Result<SimResult> r = Status::error("not run");
  {
    Simulation s(o, dir);
    r = s.run();
  }
  if (temp) std::filesystem::remove_all(dir, ec);
  if (!r.is_ok()) return r.status().with_context(fmt::format("simulation seed {}", o.seed));
  SimResult& res = r.value();
  res.line = fmt::format(
      "sim seed {} nodes {} steps {}: {} step {} sim {:.0f} s frames {} lost {} duplicated {} (filtered {}) "
      "crashes {} partitions {} commit_failures {} learner_restarts {} trace {:016x}",
      o.seed, o.nodes, o.steps, res.ok ? "ok" : "FAIL", res.learner_step, res.sim_seconds, res.frames, res.dropped,
      res.duplicated, res.duplicates_filtered, res.crashes, res.partitions, res.commit_failures,
      res.learner_restarts, res.trace_hash);
  if (!res.ok) {
    for (const std::string& v : res.violations) res.line += "\n  violated: " + v;
    res.line += "\n  replay: " + replay_command(o);
  }
  return r;
}

}  // namespace m1::sim
