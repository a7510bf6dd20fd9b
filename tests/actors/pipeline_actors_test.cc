// The pipeline's thin actors on CAF's deterministic test coordinator: no sleeps, no
// threads; the scheduler runs every message to quiescence.
#include <doctest/doctest.h>

#include <caf/scheduler/test_coordinator.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "actors/pipeline/actors.h"
#include "actors/pipeline/wire.h"
#include "tests/actors/caf_test_system.h"
#include "base/file.h"
#include <nlohmann/json.hpp>
#include "model/model.h"
#include "model/sft.h"
#include "model/tokenizer.h"

using namespace m1;

namespace {

using test::TestSystem;

// A rollout of `text` for an "add" prompt, as a generator would send it.
msg::Bytes make_rollout(wire::Sender& s, uint64_t group, uint32_t index, const std::string& text) {
  ByteTokenizer tok;
  wire::PromptInfo p;
  p.prompt_id = 7;
  p.group_id = group;
  p.task = "add";
  p.dataset = "builtin";
  p.prompt = "2+3=";
  p.reference = "5";
  p.group_size = 2;
  p.prompt_tokens = {tok.bos_id()};
  for (int t : tok.encode(p.prompt)) p.prompt_tokens.push_back(t);
  msg::Bytes rq = wire::generation_request(s, p, 100 + index, index, 8, 1.0f, 1.0f, 1, 0, 1);
  GenOutput o;
  o.request_id = 100 + index;
  o.tokens = tok.encode(text);
  o.tokens.push_back(tok.eos_id());
  o.logprobs.assign(o.tokens.size(), -0.1f);
  o.versions.assign(o.tokens.size(), 0);
  o.finish = "eos";
  return wire::rollout(s, *msg::decode<msg::GenerationRequest>(rq).value(), o, 1);
}

}  // namespace

TEST_CASE("judge actor: a correct and a wrong answer get rewards 1 and 0; garbage bytes are rejected and counted") {
  TestSystem ts;
  auto rejects = std::make_shared<pipe::RejectCounters>();
  auto judge = ts.sys->spawn(pipe::judge_actor, pipe::JudgeArgs{5, 1, 0, rejects});
  wire::Sender s{9, 1, 0};
  std::vector<float> rewards;
  std::vector<std::string> reasons;
  auto client = ts.sys->spawn([&](caf::event_based_actor* self) {
    for (const char* text : {"<answer>5</answer>", "<answer>6</answer>"}) {
      msg::Bytes r = make_rollout(s, 11, 0, text);
      msg::Bytes jr = wire::judge_request(s, *msg::decode<msg::Rollout>(r).value()->data(), "5", 0);
      self->request(judge, caf::infinite, pipe::judge_atom::value, jr).then([&](const msg::Bytes& v) {
        auto d = msg::decode<msg::Verdict>(v);
        REQUIRE(d.is_ok());
        rewards.push_back(d.value()->reward());
        reasons.push_back(d.value()->reason()->str());
      });
    }
    std::vector<uint8_t> junk = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    self->request(judge, caf::infinite, pipe::judge_atom::value, msg::Bytes(junk))
        .then([&](const msg::Bytes& v) { CHECK(v.empty()); });
  });
  ts.sched->run();
  REQUIRE(rewards.size() == 2);
  CHECK(rewards[0] == 1.0f);
  CHECK(rewards[1] == 0.0f);
  CHECK(rejects->judge.load() == 1);
  caf::anon_send_exit(judge, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(client, caf::exit_reason::user_shutdown);
  ts.sched->run();
}

using json = nlohmann::json;

TEST_CASE("replay actor: groups are acknowledged after the durable group commit, then served and committed") {
  TestSystem ts;
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("m1-replay-actor-" + std::to_string(getpid()))).string();
  remove_all(dir);
  ReplayOptions o;
  o.max_staleness = 2;
  auto store = ReplayStore::open(dir, o);
  REQUIRE(store.is_ok());
  std::shared_ptr<ReplayStore> sp(std::move(store.value()));
  auto rejects = std::make_shared<pipe::RejectCounters>();
  auto replay = ts.sys->spawn(pipe::replay_actor, pipe::ReplayArgs{sp, rejects});
  std::vector<uint64_t> acks;
  size_t served = 0;
  bool committed = false;
  auto client = ts.sys->spawn([&](caf::event_based_actor* self) {
    for (uint64_t g = 1; g <= 3; ++g)
      self->request(replay, caf::infinite, pipe::group_atom::value, make_synthetic_group(g, "add", 0, 2, 4))
          .then([&](const msg::Bytes& b) {
            auto ack = msg::decode<msg::ReplayAck>(b);
            REQUIRE(ack.is_ok());
            CHECK(ack.value()->ok());
            acks.push_back(ack.value()->group_id());
          });
  });
  ts.sched->run();
  CHECK(acks == std::vector<uint64_t>{1, 2, 3});
  CHECK(sp->counters().by_status[0] == 3);  // durable before the acks were delivered
  auto client2 = ts.sys->spawn([&](caf::event_based_actor* self) {
    self->request(replay, caf::infinite, pipe::take_atom::value, uint64_t(2), uint64_t(1), uint64_t(1))
        .then([&, self](const msg::Bytes& reply) {
          auto batch = msg::decode<msg::TrainingBatch>(reply);
          REQUIRE(batch.is_ok());
          CHECK(batch.value()->learner_version() == 1);
          std::vector<msg::Bytes> got = wire::batch_groups(*batch.value());
          served = got.size();
          std::vector<uint64_t> ids;
          for (auto& b : got) ids.push_back(msg::decode<msg::JudgedGroup>(b).value()->group_id());
          CHECK(ids == std::vector<uint64_t>(batch.value()->group_ids()->begin(), batch.value()->group_ids()->end()));
          self->request(replay, caf::infinite, pipe::commit_atom::value, ids, uint64_t(1), uint64_t(2), uint64_t(1))
              .then([&](const msg::Bytes& b) {
                auto r = msg::decode<msg::CommitResult>(b);
                REQUIRE(r.is_ok());
                CHECK(r.value()->step() == 1);
                committed = r.value()->ok();
              });
        });
  });
  ts.sched->run();
  CHECK(served == 2);
  CHECK(committed);
  CHECK(sp->counters().by_status[1] == 2);
  CHECK(sp->counters().published_version == 2);  // durable with the consumption
  // release: the learner gave up on a take; every lease goes back to the queue.
  auto leased = sp->take_batch(1, 1);
  REQUIRE(leased.is_ok());
  CHECK(leased->size() == 1);
  CHECK(sp->counters().leased == 1);
  caf::anon_send(replay, pipe::release_atom::value, uint64_t(1));
  ts.sched->run();
  CHECK(sp->counters().leased == 0);
  // A group that does not decode is refused (and counted); stats are a Metrics message.
  bool refused = false;
  json stats;
  auto client3 = ts.sys->spawn([&](caf::event_based_actor* self) {
    self->request(replay, caf::infinite, pipe::group_atom::value, msg::Bytes(std::vector<uint8_t>(16, 7)))
        .then([&](const msg::Bytes& b) {
          auto ack = msg::decode<msg::ReplayAck>(b);
          REQUIRE(ack.is_ok());
          refused = !ack.value()->ok() && ack.value()->group_id() == 0;
        });
    self->request(replay, caf::infinite, pipe::stats_atom::value).then([&](const msg::Bytes& b) {
      auto m = msg::decode<msg::Metrics>(b);
      REQUIRE(m.is_ok());
      stats = wire::metrics_json(*m.value());
    });
  });
  ts.sched->run();
  CHECK(refused);
  CHECK(rejects->replay.load() == 1);
  CHECK(stats["pending"] == 1);
  CHECK(stats["consumed"] == 2);
  CHECK(stats["leased"] == 0);
  for (auto& a : {replay, client, client2, client3}) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  ts.sched->run();
  sp.reset();
  remove_all(dir);
}

TEST_CASE("msg::Bytes survives CAF's binary serialisation (the remote path), alone and in a vector") {
  caf::actor_system_config cfg;
  pipe::register_message_types(cfg);
  caf::actor_system sys{cfg};
  std::vector<uint8_t> raw(1000);
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = uint8_t(i * 37 + 11);
  msg::Bytes one(raw);
  std::vector<msg::Bytes> many = {one, msg::Bytes(), msg::Bytes(std::vector<uint8_t>{1, 2, 3})};
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  REQUIRE(!sink(one, many));
  msg::Bytes back;
  std::vector<msg::Bytes> many_back;
  caf::binary_deserializer source{sys, buf};
  REQUIRE(!source(back, many_back));
  CHECK(back.vec() == raw);
  REQUIRE(many_back.size() == 3);
  CHECK(many_back[0].vec() == raw);
  CHECK(many_back[1].empty());
  CHECK(many_back[2].vec() == std::vector<uint8_t>{1, 2, 3});
  // A message carrying Bytes renders through the same inspect (CAF's stringification, logging).
  auto m = caf::make_message(pipe::rollout_atom::value, msg::Bytes(std::vector<uint8_t>{7, 8}));
  CHECK(caf::to_string(m) == "('rollout', m1.bytes([7, 8]))");
  // Truncated input is an error, not a crash.
  std::vector<char> cut(buf.begin(), buf.begin() + 100);
  caf::binary_deserializer short_source{sys, cut};
  msg::Bytes partial;
  CHECK(short_source(partial));
}

TEST_CASE("evaluator actor: evaluates the version it holds, takes published weights, refuses corrupt ones") {
  auto mc = load_model_config(std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json");
  REQUIRE(mc.is_ok());
  Model m(mc.value());
  m.init_random(3);
  RunConfig c;
  c.tasks = {"add"};
  c.eval_examples = 6;
  c.max_new = 4;
  auto model = std::make_shared<Model>(m);
  auto rejects = std::make_shared<pipe::RejectCounters>();
  TestSystem ts;
  auto ev = ts.sys->spawn(pipe::evaluator_actor, pipe::EvaluatorArgs{c, model, 3, rejects, 0});
  // Another version's weights: every parameter moved.
  std::vector<float> next(m.params(), m.params() + m.num_params());
  for (float& x : next) x = x * 0.5f + 0.01f;
  wire::Sender s{0x1ea001, 1, 0};
  auto good = wire::weights(s, next.data(), next.size(), 4, 1000);
  auto bad = wire::weights(s, next.data(), next.size(), 5, 1000);
  REQUIRE(bad.size() > 1);
  std::vector<uint8_t> flipped = bad[1].vec();
  flipped[flipped.size() / 2] ^= 0x40;
  bad[1] = msg::Bytes(std::move(flipped));
  std::vector<std::vector<double>> replies;  // {held, accuracy, seconds}
  auto ask = [&](uint64_t version) {
    ts.sys->spawn([&, version](caf::event_based_actor* self) {
      self->request(ev, caf::infinite, pipe::eval_atom::value, version).then([&, version](const msg::Bytes& b) {
        auto r = msg::decode<msg::EvalResult>(b);
        REQUIRE(r.is_ok());
        CHECK(r.value()->version() == version);
        replies.push_back({double(r.value()->held()), r.value()->accuracy(), r.value()->seconds()});
      });
    });
    ts.sched->run();
  };
  ask(3);  // the spawn version
  ask(4);  // not sent yet
  caf::anon_send(ev, pipe::weights_atom::value, good);
  ts.sched->run();
  CHECK(std::equal(next.begin(), next.end(), model->params()));
  ask(4);
  caf::anon_send(ev, pipe::weights_atom::value, bad);
  ts.sched->run();
  CHECK(rejects->evaluator.load() == 1);
  CHECK(std::equal(next.begin(), next.end(), model->params()));  // the corrupt version changed nothing
  ask(5);
  REQUIRE(replies.size() == 4);
  // The accuracy is evaluate_tasks' on the weights held, with the run's eval settings.
  ByteTokenizer tok;
  auto expected = [&](const Model& w) {
    return evaluate_tasks(w, tok, c.tasks, c.min_difficulty, c.max_difficulty, c.eval_examples, c.seed, c.max_new)
        .accuracy;
  };
  Model moved = m;
  std::copy(next.begin(), next.end(), moved.params());
  CHECK(replies[0][0] == 1.0);  // held
  CHECK(replies[2][0] == 1.0);
  CHECK(replies[0][1] == expected(m));
  CHECK(replies[2][1] == expected(moved));
  CHECK(replies[0][2] >= 0.0);
  CHECK(replies[2][2] >= 0.0);
  CHECK(replies[1] == std::vector<double>{0.0, 0.0, 0.0});  // not held: no accuracy
  CHECK(replies[3] == std::vector<double>{0.0, 0.0, 0.0});
  caf::anon_send_exit(ev, caf::exit_reason::user_shutdown);
  ts.sched->run();
}

TEST_CASE("generator actor: a request whose min_version is newer than its weights waits for them") {
  auto mc = load_model_config(std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json");
  REQUIRE(mc.is_ok());
  Model m(mc.value());
  m.init_random(4);
  ByteTokenizer tok;
  auto logic = std::make_shared<GeneratorLogic>(m, 1, 4, tok.eos_id(), RepetitionStop{});
  auto rejects = std::make_shared<pipe::RejectCounters>();
  TestSystem ts;
  std::vector<uint64_t> token_versions;
  int rollouts = 0;
  auto sampler = ts.sys->spawn([&]() -> caf::behavior {
    return {[&](pipe::rollout_atom, const msg::Bytes& b) {
      auto r = msg::decode<msg::Rollout>(b);
      REQUIRE(r.is_ok());
      ++rollouts;
      for (auto v : *r.value()->data()->versions()) token_versions.push_back(v);
    }};
  });
  auto gen = ts.sys->spawn(pipe::generator_actor, pipe::GeneratorArgs{logic, sampler, pipe::generator_id(0), 1, rejects});
  wire::Sender s{0x5a0001, 1, 0};
  wire::PromptInfo p;
  p.prompt_id = 7;
  p.group_id = 1;
  p.task = "add";
  p.dataset = "builtin";
  p.prompt = "1+1=";
  p.reference = "2";
  p.group_size = 1;
  p.prompt_tokens = encode_prompt(tok, p.prompt);
  caf::anon_send(gen, pipe::gen_atom::value,
                 wire::generation_request(s, p, 11, 0, 4, 1.0f, 1.0f, 5, /*min_version=*/3, pipe::generator_id(0)));
  ts.sched->run();
  CHECK(rollouts == 0);  // holds version 1: the request waits
  wire::Sender ls{0x1ea001, 1, 0};
  caf::anon_send(gen, pipe::weights_atom::value, wire::weights(ls, m.params(), m.num_params(), 2, 1 << 20));
  ts.sched->run();
  CHECK(rollouts == 0);  // version 2 is still older than 3
  caf::anon_send(gen, pipe::weights_atom::value, wire::weights(ls, m.params(), m.num_params(), 3, 1 << 20));
  ts.sched->run();
  REQUIRE(rollouts == 1);
  REQUIRE(!token_versions.empty());
  for (auto v : token_versions) CHECK(v >= 3);
  caf::anon_send_exit(gen, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(sampler, caf::exit_reason::user_shutdown);
  ts.sched->run();
}

TEST_CASE("replay actor: a newer learner epoch fences the older one out and takes over its leases") {
  TestSystem ts;
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("m1-replay-fence-" + std::to_string(getpid()))).string();
  remove_all(dir);
  auto store = ReplayStore::open(dir, ReplayOptions{});
  REQUIRE(store.is_ok());
  std::shared_ptr<ReplayStore> sp(std::move(store.value()));
  REQUIRE(sp->append({make_synthetic_group(1, "add", 0, 2, 4), make_synthetic_group(2, "add", 0, 2, 4)}).is_ok());
  auto replay = ts.sys->spawn(pipe::replay_actor, pipe::ReplayArgs{sp, std::make_shared<pipe::RejectCounters>()});
  auto ids_of = [](const msg::Bytes& reply) {
    auto b = msg::decode<msg::TrainingBatch>(reply);
    REQUIRE(b.is_ok());
    return std::vector<uint64_t>(b.value()->group_ids()->begin(), b.value()->group_ids()->end());
  };
  std::vector<std::string> trace;
  auto client = ts.sys->spawn([&](caf::event_based_actor* self) {
    // Epoch 1 leases group 1 and is then superseded (it crashed, or it is paused and will resume).
    self->request(replay, std::chrono::seconds(10), pipe::take_atom::value, uint64_t(1), uint64_t(0), uint64_t(1))
        .await([&, self](const msg::Bytes& r1) {
          trace.push_back("e1 took " + std::to_string(ids_of(r1).size()));
          // Epoch 2's take releases epoch 1's lease: it gets both groups.
          self->request(replay, std::chrono::seconds(10), pipe::take_atom::value, uint64_t(2), uint64_t(0), uint64_t(2))
              .await([&, self](const msg::Bytes& r2) {
                trace.push_back("e2 took " + std::to_string(ids_of(r2).size()));
                self->request(replay, std::chrono::seconds(10), pipe::commit_atom::value, std::vector<uint64_t>{1},
                              uint64_t(1), uint64_t(1), uint64_t(1))
                    .await([&, self](const msg::Bytes& c) {
                      auto r = msg::decode<msg::CommitResult>(c);
                      REQUIRE(r.is_ok());
                      trace.push_back(std::string("e1 commit ") + (r.value()->ok() ? "ok" : r.value()->reason()->str()));
                      self->request(replay, std::chrono::seconds(10), pipe::take_atom::value, uint64_t(1), uint64_t(0),
                                    uint64_t(1))
                          .await([&](const msg::Bytes&) { trace.push_back("e1 take answered"); },
                                 [&](caf::error& e) { trace.push_back("e1 take refused: " + ts.sys->render(e)); });
                    });
              });
        });
  });
  ts.sched->run();
  REQUIRE(trace.size() == 4);
  CHECK(trace[0] == "e1 took 1");
  CHECK(trace[1] == "e2 took 2");
  CHECK(trace[2] == "e1 commit refused: learner epoch 1 is superseded by epoch 2");
  CHECK(trace[3].find("e1 take refused") == 0);
  CHECK(trace[3].find("superseded by epoch 2") != std::string::npos);
  CHECK(sp->counters().by_status[1] == 0);  // nothing consumed by the fenced learner
  CHECK(sp->counters().leased == 2);        // epoch 2's
  caf::anon_send_exit(replay, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(client, caf::exit_reason::user_shutdown);
  ts.sched->run();
  remove_all(dir);
}
