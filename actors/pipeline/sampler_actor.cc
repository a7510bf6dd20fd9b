// The sampler actor: a thin CAF shell over DynamicSampler (actors/sampler/sampler_logic.h), which
// owns every sampling decision — admission under the staleness rule, prompt draws, group
// bookkeeping, overlong shaping, dynamic sampling (zero-variance drops), GRPO advantages and the
// health counters — and RequestTracker (actors/sampler/request_tracker.h), which owns the leases
// of generation requests: who gets a group, when an unanswered request is overdue, who gets it
// instead, and which Rollouts are duplicates. The actor only moves messages:
//   issue()        → one GenerationRequest per rollout, every request of a group to one
//                    generator, groups round robin over the live generators;
//   lease check    → a self-message every kLeaseCheck (CAF's clock: a test coordinator's clock
//                    drives it) while requests are out: the overdue ones are sent again, with
//                    the same request ids, to another live generator;
//   Rollout        → the first answer for its request id is stored (its bytes go into the judged
//                    group later) and sent to a judge, round-robin; a later one (a reissued
//                    request answered twice) is dropped and counted (rollouts_duplicate_dropped);
//                    a failed judgement (error reply, 10 s timeout, ok = false, undecodable
//                    verdict) is re-sent up to judge_retries times (RetryPolicy, actors/judge),
//                    then dead-lettered: on_dead_letter(); a verdict for a rollout no longer
//                    awaiting one (a late reply after a retry succeeded) is dropped;
//   Verdict        → on_judged(); an accepted group is encoded as a JudgedGroup and sent to
//                    replay; replay's answer goes to on_persisted(): the group counts as accepted
//                    only once replay acknowledges its durable write (ReplayAck.ok), and until then
//                    it holds an in-flight slot; a failure frees the slot for a replacement;
//   StepReport     → set_learner_version();
//   add/remove generator or judge (or a member's down message) → membership: a removed
//                    generator's unanswered requests go to the others at once; generator changes
//                    are passed on to the membership observer (the learner, which publishes
//                    weights to the generators), and a generator that joins gets requests whose
//                    min_version is at least the learner version at its join, so it starts them
//                    only once it holds those weights (the learner sends them when told);
//   stats          → a Metrics message of health metrics since the previous query (stats()).
// Transport state kept here (not policy): each open group's prompt message fields and the
// Rollout bytes by index; the judge-retry state; the member handles; the metrics window.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>

#include "actors/judge/judge_logic.h"
#include "actors/pipeline/actors.h"
#include "actors/pipeline/wire.h"
#include "actors/sampler/sampler_logic.h"
#include "base/log.h"
#include "base/planted.h"
#include "model/tokenizer.h"

namespace m1::pipe {

namespace {

constexpr int64_t kJudgeTimeoutMs = 10000;
constexpr int64_t kReplayTimeoutMs = 60000;
// How often the sampler looks for overdue generation requests while any is out. A lease lasts a
// minute or more (RequestTrackerOptions: a 60 s floor plus 50 ms per token of work queued at the
// generator, pessimistic for a healthy 2-core machine, where the small model decodes a token in
// about 1 ms), so a check a second costs nothing and reissues at most a second late.
constexpr auto kLeaseCheck = std::chrono::seconds(1);

using lease_atom = caf::atom_constant<caf::atom("lease")>;  // sampler → itself: check the leases

uint64_t unix_ms() {
  return uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

// The message fields of one group the sampler tracks (or that awaits its judged-group encoding).
struct GroupWire {
  wire::PromptInfo info;
  std::vector<uint64_t> request_ids;  // by index: the issued request ids (retry keys)
  std::vector<uint64_t> seeds;        // by index: sampling seeds (a reissue sends the same)
  int max_new = 0;
  uint64_t min_version = 0;           // of every request (a generator that joined late: higher)
  std::vector<msg::Bytes> rollouts;   // by index: Rollout messages, empty until received
};

// Per-response health metrics since the last stats query, over the groups the sampler completed
// (accepted or dropped for zero variance); group counts come from the sampler's counters.
struct Window {
  uint64_t rollouts = 0;
  double reward_sum = 0, reward_sq = 0;  // of the judges' rewards (no overlong or format penalty)
  double shaped_sum = 0;                 // of the shaped rewards R (what replay stores)
  std::map<std::string, uint64_t> finish;
  std::map<std::string, std::pair<double, uint64_t>> reward_by_task;  // sum, count
  std::vector<int64_t> lengths;

  void add(const CompletedGroup& g) {
    for (const ScoredRollout& s : g.rollouts) {
      const double r = s.judged.reward;
      ++rollouts;
      reward_sum += r;
      reward_sq += r * r;
      shaped_sum += s.reward;
      finish[s.judged.finish]++;
      lengths.push_back(s.judged.tokens);
      auto& t = reward_by_task[g.prompt.task];
      t.first += r;
      t.second++;
    }
  }
};

// The sources the run samples from: the built-in tasks, then the prompts file. Every error is
// returned (load_run_config checks this before the run starts: a source is never left out).
Result<Curriculum> make_curriculum(const RunConfig& c) {
  Curriculum cur;
  // ramp_steps = 0 means always max_difficulty (DifficultySchedule: start_max is then unused).
  const DifficultySchedule sched = DifficultySchedule::linear(c.min_difficulty, c.start_max_difficulty,
                                                              c.max_difficulty, c.difficulty_ramp_steps);
  for (const std::string& t : c.tasks) {
    M1_ASSIGN_OR_RETURN(auto src, BuiltinPromptSource::create(t, sched));
    M1_RETURN_IF_ERROR(cur.add(std::move(src), WeightSchedule::constant(1.0)));
  }
  if (!c.prompts_jsonl.empty()) {
    auto src = JsonlPromptSource::load(c.prompts_jsonl);
    if (!src.is_ok()) return src.status().with_context("key 'sampler.prompts'");
    M1_RETURN_IF_ERROR(cur.add(std::move(src).value(), WeightSchedule::constant(1.0)));
  }
  return cur;
}

SamplerOptions make_options(const RunConfig& c, uint64_t incarnation, uint64_t start_version) {
  SamplerOptions o;
  o.group_size = uint32_t(c.group_size);
  o.batch_groups = uint32_t(c.batch_groups);
  o.max_staleness = uint64_t(c.max_staleness);
  o.oversample = c.oversample;
  o.lookahead = uint64_t(c.lookahead);
  o.advantage.divide_by_std = c.std_normalize;
  o.dynamic_sampling = c.dynamic_sampling;
  o.overlong.enabled = c.overlong_cache > 0;  // L_max = the group's max_new
  o.overlong.l_cache = c.overlong_cache;
  o.format_penalty = c.format_penalty;
  o.seed = c.seed * 1000003ull + incarnation;
  // ids: incarnation in the high bits, so ids never repeat across restarts
  o.first_group_id = (incarnation << 40) + 1;
  o.first_request_id = (incarnation << 40) + 1;
  o.start_learner_version = start_version;
  o.accepted_before = 0;  // groups pending in replay from earlier incarnations are not counted
  o.await_persistence = true;
  return o;
}

Result<DynamicSampler> make_sampler(const RunConfig& c, uint64_t incarnation, uint64_t start_version) {
  M1_ASSIGN_OR_RETURN(Curriculum cur, make_curriculum(c));
  return DynamicSampler::create(make_options(c, incarnation, start_version), std::move(cur),
                                LengthWindows::fixed(c.max_new));
}

class SamplerShell : public std::enable_shared_from_this<SamplerShell> {
 public:
  SamplerShell(caf::event_based_actor* self, SamplerArgs a)
      : self_(self),
        a_(std::move(a)),
        sender_{0x5a0000ull + 1, a_.incarnation, 0},
        // JudgeRequest.attempt must stay < 100: at most RetryPolicy::kMaxRetries = 99 retries.
        retry_(uint32_t(std::clamp<int>(a_.cfg.judge_retries, 0, int(RetryPolicy::kMaxRetries))),
               kJudgeTimeoutMs),
        tracker_(a_.leases) {
    auto s = make_sampler(a_.cfg, a_.incarnation, a_.start_version);
    if (s.is_ok())
      logic_.emplace(std::move(s).value());
    else  // load_run_config checked this config (validate_sampler_config): only a file changed since
      log_error("sampler: {}", s.status().message());
    observer_ = a_.membership;
  }

  // The members given at spawn (ids generator_id(i), judge_id(i)); they hold the start weights.
  void start_members() {
    std::vector<caf::actor> gens = std::move(a_.generators), judges = std::move(a_.judges);
    a_.generators.clear();
    a_.judges.clear();
    for (size_t i = 0; i < gens.size(); ++i) add_generator(gens[i], generator_id(i), /*tell=*/false);
    for (size_t i = 0; i < judges.size(); ++i) add_judge(judges[i], judge_id(i));
  }

  // Opens every group admission allows and sends its generation requests.
  void pump() {
    if (!logic_ || stopped_) return;
    Result<std::vector<IssuedGroup>> issued = logic_->issue();
    if (!issued.is_ok()) {
      log_error("sampler: {}", issued.status().message());
      return;
    }
    for (const IssuedGroup& g : issued.value()) send_group(g);
  }

  void on_rollout(const msg::Bytes& b);
  void on_step(const msg::Bytes& b) {
    auto r = msg::decode<msg::StepReport>(b);
    if (!r.is_ok()) {
      a_.rejects->sampler++;
      return;
    }
    if (logic_) logic_->set_learner_version(r.value()->version());
    pump();
  }

  // Membership. A generator joins with the learner version now as the oldest weights it may use;
  // TELL: pass the change on to the observer (members given at spawn already have weights).
  void add_generator(const caf::actor& g, uint64_t id, bool tell = true);
  void remove_generator(uint64_t id, const char* why);
  void add_judge(const caf::actor& j, uint64_t id);
  void remove_judge(uint64_t id, const char* why);
  void set_observer(const caf::actor& o) { observer_ = o; }
  // A monitored member terminated: it leaves.
  void on_down(const caf::down_msg& m);
  // The lease check (kLeaseCheck): overdue requests go to another generator.
  void check_leases();

  // Metrics (source "sampler") since the previous query: reward_mean, reward_shaped_mean,
  // reward_std, length_mean, length_p99 (tokens), finish_reasons.<reason> and
  // reward_by_task.<task> (the mean), groups, dropped_zero_variance, dead_lettered (rollouts),
  // dropped_fraction, wasted_tokens, wasted_fraction, rollouts_duplicate_dropped (Rollouts
  // dropped as a second answer to one request), requests_reissued (requests sent again: overdue,
  // or their generator left); accepted_total, in_flight, dropped_total, generators, judges (the
  // members now).
  msg::Bytes stats();

  // Drops every actor handle and all transport state (the sampler terminated).
  void shutdown() {
    stopped_ = true;
    a_.generators.clear();
    a_.judges.clear();
    a_.replay = nullptr;
    a_.membership = nullptr;
    a_.events.reset();
    gens_.clear();
    judges_.clear();
    observer_ = nullptr;
    wire_.clear();
  }

 private:
  struct Generator {
    caf::actor actor;
    uint64_t join_version = 0;  // every request it gets has min_version ≥ this
  };
  struct JudgeCall {
    uint64_t group_id;
    uint32_t index, attempt;
  };
  int64_t now_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(self_->clock().now().time_since_epoch()).count();
  }
  void send_group(const IssuedGroup& g);
  void send_requests(const Assignment& as);
  void arm_lease_check();
  void judge(uint64_t group_id, uint32_t index, uint32_t attempt);
  void on_verdict(uint64_t group_id, uint32_t index, uint32_t attempt, const msg::Bytes& vb);
  void judge_failed(uint64_t group_id, uint32_t index, uint32_t attempt, const std::string& why);
  void apply(uint64_t group_id, const GroupUpdate& u);
  void persist(const CompletedGroup& g, const GroupWire& w);
  void on_ack(uint64_t group_id, const msg::Bytes& ack);
  void persisted(uint64_t group_id, bool acked);
  // The verified RolloutData of a stored rollout. REQUIRES: w.rollouts[index] non-empty.
  static const msg::RolloutData* rollout_data(const GroupWire& w, uint32_t index) {
    return msg::decode<msg::Rollout>(w.rollouts[index]).value()->data();
  }

  caf::event_based_actor* self_;
  SamplerArgs a_;
  wire::Sender sender_;
  ByteTokenizer tok_;
  std::optional<DynamicSampler> logic_;
  uint64_t zero_var_run_ = 0;  // groups dropped for zero variance since the last accepted one
  RetryPolicy retry_;
  RequestTracker tracker_;
  std::unordered_map<uint64_t, GroupWire> wire_;  // by group id
  std::map<uint64_t, Generator> gens_;            // by member id
  std::vector<std::pair<uint64_t, caf::actor>> judges_;  // (member id, handle), join order
  std::vector<JudgeCall> judge_waiting_;          // judge calls made while no judge was a member
  caf::actor observer_;                           // told of generator changes (the learner)
  size_t rr_judge_ = 0;
  bool stopped_ = false, lease_armed_ = false, warned_no_generator_ = false;
  // Metrics: the window, and the cumulative values at the previous stats query.
  Window w_;
  SamplerCounters prev_;
  uint64_t prev_persist_failures_ = 0, prev_dead_letters_ = 0, prev_duplicates_ = 0, prev_reissued_ = 0;
};

void SamplerShell::on_rollout(const msg::Bytes& b) {
  auto r = msg::decode<msg::Rollout>(b);
  if (!r.is_ok()) {
    a_.rejects->sampler++;
    log_warn("sampler: rejected a rollout: {}", r.status().message());
    return;
  }
  const msg::RolloutData* d = r.value()->data();
  const uint64_t request_id = r.value()->request_id();
  std::optional<Answer> open = tracker_.lookup(request_id);
  const bool planted = planted_bugs().dedupe_off;  // base/planted.h: the simulation's self-test only
  if (!open) {
    // Answered before (a reissued request answered twice: dropped, counted by the tracker), or
    // never issued here (a reject).
    const AnswerKind k = tracker_.answer(request_id).kind;
    if (k != AnswerKind::kDuplicate) a_.rejects->sampler++;
    if (!planted || k != AnswerKind::kDuplicate) return;
    open = Answer{AnswerKind::kFirst, d->group_id(), d->index()};
  }
  auto it = wire_.find(d->group_id());
  if (open->group_id != d->group_id() || open->index != d->index() || d->rollout_id() != request_id ||
      it == wire_.end() || d->index() >= it->second.rollouts.size() ||
      (!it->second.rollouts[d->index()].empty() && !planted)) {
    a_.rejects->sampler++;  // it does not answer the request it names
    return;
  }
  tracker_.answer(request_id);
  it->second.rollouts[d->index()] = b;
  if (planted && retry_.tracking(request_id)) (void)retry_.succeeded(request_id);  // judged afresh
  const uint32_t attempt = retry_.start(request_id, now_ms());
  judge(d->group_id(), d->index(), attempt);
}

void SamplerShell::add_generator(const caf::actor& g, uint64_t id, bool tell) {
  if (stopped_) return;
  if (!g || id == 0 || gens_.count(id)) {
    log_warn("sampler: generator {} not added: {}", id, !g || id == 0 ? "no handle or id 0" : "already a member");
    return;
  }
  gens_[id] = Generator{g, tell && logic_ ? logic_->learner_version() : 0};
  self_->monitor(g);
  if (tell && observer_) self_->send(observer_, add_generator_atom::value, g, id);
  if (tell) log_info("sampler: generator {} joined ({} generators)", id, gens_.size());
  warned_no_generator_ = false;
  for (const Assignment& as : tracker_.add_member(id, now_ms()).second) send_requests(as);
}

void SamplerShell::remove_generator(uint64_t id, const char* why) {
  auto it = gens_.find(id);
  if (it == gens_.end()) return;
  self_->demonitor(it->second.actor);
  gens_.erase(it);
  if (observer_) self_->send(observer_, remove_generator_atom::value, id);
  auto moved = tracker_.remove_member(id, now_ms()).second;
  size_t n = 0;
  for (const Assignment& as : moved) n += as.requests.size();
  log_warn("sampler: generator {} left ({}; {} generators remain): its {} unanswered requests {}", id, why,
           gens_.size(), n, gens_.empty() ? "wait for a generator" : "go to the others");
  for (const Assignment& as : moved) send_requests(as);
}

void SamplerShell::add_judge(const caf::actor& j, uint64_t id) {
  if (stopped_) return;
  const bool known = std::any_of(judges_.begin(), judges_.end(), [&](const auto& m) { return m.first == id; });
  if (!j || id == 0 || known) {
    log_warn("sampler: judge {} not added: {}", id, known ? "already a member" : "no handle or id 0");
    return;
  }
  judges_.emplace_back(id, j);
  self_->monitor(j);
  std::vector<JudgeCall> waiting = std::move(judge_waiting_);
  judge_waiting_.clear();
  for (const JudgeCall& c : waiting) judge(c.group_id, c.index, c.attempt);
}

// Requests in flight to a removed judge are not re-sent at once: each fails (an error when the
// judge is gone, else the 10 s timeout) and RetryPolicy sends it to another judge.
void SamplerShell::remove_judge(uint64_t id, const char* why) {
  auto it = std::find_if(judges_.begin(), judges_.end(), [&](const auto& m) { return m.first == id; });
  if (it == judges_.end()) return;
  self_->demonitor(it->second);
  judges_.erase(it);
  log_warn("sampler: judge {} left ({}; {} judges remain)", id, why, judges_.size());
}

void SamplerShell::on_down(const caf::down_msg& m) {
  for (const auto& [id, g] : gens_)
    if (g.actor.address() == m.source) return remove_generator(id, "it terminated");
  for (const auto& [id, j] : judges_)
    if (j.address() == m.source) return remove_judge(id, "it terminated");
}

void SamplerShell::send_group(const IssuedGroup& g) {
  const RunConfig& c = a_.cfg;
  GroupWire w;
  w.info.prompt_id = g.prompt.prompt_id;
  w.info.group_id = g.group_id;
  w.info.task = g.prompt.task;
  w.info.dataset = g.prompt.dataset;
  w.info.prompt = g.prompt.text;
  w.info.reference = g.prompt.reference;
  w.info.group_size = c.group_size;
  w.info.prompt_tokens = encode_prompt(tok_, g.prompt.text);
  w.rollouts.resize(g.rollouts.size());
  w.max_new = int(g.max_new);
  const uint64_t staleness = uint64_t(c.max_staleness);
  w.min_version = g.issue_version > staleness ? g.issue_version - staleness : 0;
  std::vector<TrackedRequest> requests;
  for (const IssuedRollout& r : g.rollouts) {
    w.request_ids.push_back(r.request_id);
    w.seeds.push_back(r.seed);
    requests.push_back({r.request_id, r.index});
  }
  // A generator works through the prompt and up to max_new tokens of each request.
  const int64_t work = int64_t(w.info.prompt_tokens.size()) + g.max_new;
  wire_.emplace(g.group_id, std::move(w));
  send_requests(tracker_.issue(g.group_id, std::move(requests), work, now_ms()));
}

void SamplerShell::send_requests(const Assignment& as) {
  auto it = wire_.find(as.group_id);
  if (it == wire_.end() || stopped_) return;
  if (as.member == 0) {
    if (!warned_no_generator_) log_warn("sampler: no generator: requests wait until one is added");
    warned_no_generator_ = true;
    return;
  }
  const Generator& gen = gens_.at(as.member);
  const GroupWire& w = it->second;
  const uint64_t min_version = std::max(w.min_version, gen.join_version);
  for (const TrackedRequest& r : as.requests) {
    msg::Bytes rq = wire::generation_request(sender_, w.info, r.request_id, r.index, w.max_new,
                                             float(a_.cfg.temperature), float(a_.cfg.top_p), w.seeds[r.index],
                                             min_version, as.member);
    self_->send(gen.actor, gen_atom::value, rq);
  }
  arm_lease_check();
}

void SamplerShell::arm_lease_check() {
  if (lease_armed_ || stopped_ || tracker_.outstanding() == tracker_.waiting()) return;
  lease_armed_ = true;
  self_->delayed_send(self_, kLeaseCheck, lease_atom::value);
}

void SamplerShell::check_leases() {
  lease_armed_ = false;
  if (stopped_) return;
  for (const Assignment& as : tracker_.overdue(now_ms())) {
    log_warn("sampler: generator {} did not answer {} request(s) of group {} in time (timeout {} of the group): "
             "sent again to generator {}",
             as.previous, as.requests.size(), as.group_id, as.timeouts, as.member);
    send_requests(as);
  }
  arm_lease_check();
}

void SamplerShell::judge(uint64_t group_id, uint32_t index, uint32_t attempt) {
  auto it = wire_.find(group_id);
  if (it == wire_.end() || stopped_) return;
  if (judges_.empty()) {  // sent when a judge is added
    if (judge_waiting_.empty()) log_warn("sampler: no judge: rollouts wait until one is added");
    judge_waiting_.push_back({group_id, index, attempt});
    return;
  }
  msg::Bytes jr = wire::judge_request(sender_, *rollout_data(it->second, index),
                                      it->second.info.reference, attempt);
  caf::actor judge = judges_[rr_judge_++ % judges_.size()].second;
  auto st = shared_from_this();
  self_->request(judge, std::chrono::milliseconds(kJudgeTimeoutMs), judge_atom::value, jr)
      .then([st, group_id, index, attempt](
                const msg::Bytes& vb) { st->on_verdict(group_id, index, attempt, vb); },
            [st, group_id, index, attempt](caf::error& e) {
              st->judge_failed(group_id, index, attempt, "judge error: " + to_string(e));
            });
}

void SamplerShell::on_verdict(uint64_t group_id, uint32_t index, uint32_t attempt,
                              const msg::Bytes& vb) {
  auto v = msg::decode<msg::Verdict>(vb);
  if (!v.is_ok()) {
    if (!vb.empty()) a_.rejects->sampler++;
    judge_failed(group_id, index, attempt, v.status().message());
    return;
  }
  if (!v.value()->ok()) {
    judge_failed(group_id, index, attempt,
                 v.value()->reason() ? v.value()->reason()->str() : "judge failed");
    return;
  }
  auto it = wire_.find(group_id);
  if (it == wire_.end() || !logic_) return;
  const uint64_t request_id = it->second.request_ids[index];
  if (!retry_.tracking(request_id)) return;  // a late duplicate
  const msg::RolloutData* d = rollout_data(it->second, index);
  JudgedRollout j;
  j.index = index;
  j.rollout_id = d->rollout_id();
  j.reward = v.value()->reward();
  j.format_reward = v.value()->format_reward();
  j.tokens = d->tokens() ? int64_t(d->tokens()->size()) : 0;
  j.reason = v.value()->reason() ? v.value()->reason()->str() : "";
  j.judge_id = v.value()->judge_id();
  j.finish = wire::finish_name(d->finish());
  Result<GroupUpdate> u = logic_->on_judged(group_id, j);
  if (!u.is_ok()) {  // a verdict the sampler cannot use counts as a failed judgement
    judge_failed(group_id, index, attempt, u.status().message());
    return;
  }
  retry_.succeeded(request_id);
  apply(group_id, u.value());
}

void SamplerShell::judge_failed(uint64_t group_id, uint32_t index, uint32_t attempt,
                                const std::string& why) {
  auto it = wire_.find(group_id);
  if (it == wire_.end() || !logic_) return;
  const RetryDecision d =
      retry_.failed(it->second.request_ids[index], attempt, why, now_ms());
  if (d.action == RetryAction::kRetry) {
    judge(group_id, index, d.attempt);
  } else if (d.action == RetryAction::kDeadLetter) {
    const msg::RolloutData* r = rollout_data(it->second, index);
    const int64_t tokens = r->tokens() ? int64_t(r->tokens()->size()) : 0;
    Result<GroupUpdate> u = logic_->on_dead_letter(group_id, index, tokens, d.reason);
    if (!u.is_ok()) {
      log_error("sampler: {}", u.status().message());
      return;
    }
    log_warn("sampler: rollout {} of group {} dead-lettered: {}", index, group_id, d.reason);
    apply(group_id, u.value());
  }
}

void SamplerShell::apply(uint64_t group_id, const GroupUpdate& u) {
  auto it = wire_.find(group_id);
  switch (u.fate) {
    case GroupFate::kAccepted:
      w_.add(*u.group);
      zero_var_run_ = 0;
      if (it != wire_.end()) persist(*u.group, it->second);
      break;
    case GroupFate::kDroppedZeroVariance:
      w_.add(*u.group);
      // A run that only drops makes no learner step: say so instead of idling without a word.
      if (++zero_var_run_ % (10 * uint64_t(a_.cfg.batch_groups)) == 0)
        log_warn("sampler: the last {} groups were all dropped for zero variance (every sample of a group got the "
                 "same reward, e.g. {}): no batch can form until the policy solves some prompts of a group and not "
                 "others (check the SFT stage and the task difficulty)",
                 zero_var_run_, u.group->rollouts.empty() ? 0.0 : u.group->rollouts[0].reward);
      break;
    case GroupFate::kDroppedDeadLetter:  // logged by judge_failed
    case GroupFate::kPending:
    case GroupFate::kIgnored:
      break;
  }
  // The rollout bytes are kept while the sampler still expects verdicts for the group
  // (stragglers of a dropped group are judged and counted as wasted).
  if (it != wire_.end() && !logic_->tracking(group_id)) wire_.erase(it);
  pump();
}

void SamplerShell::persist(const CompletedGroup& g, const GroupWire& w) {
  std::vector<wire::JudgedRollout> jr;
  for (const ScoredRollout& s : g.rollouts)
    jr.push_back({rollout_data(w, s.judged.index), float(s.reward), float(s.judged.format_reward),
                  float(s.advantage), s.judged.reason, s.judged.judge_id});
  msg::Bytes gb =
      wire::judged_group(sender_, w.info, jr, float(g.stats.mean), float(g.stats.std), unix_ms());
  auto st = shared_from_this();
  const uint64_t group_id = g.group_id;
  self_->request(a_.replay, std::chrono::milliseconds(kReplayTimeoutMs), group_atom::value, gb)
      .then([st, group_id](const msg::Bytes& ack) { st->on_ack(group_id, ack); },
            [st, group_id](caf::error& e) {
              log_error("sampler: replay did not acknowledge group {}: {}", group_id,
                        to_string(e));
              st->persisted(group_id, false);
            });
}

// A ReplayAck that does not decode, or names another group, is counted as a reject and treated
// like no acknowledgement: the group is not accepted.
void SamplerShell::on_ack(uint64_t group_id, const msg::Bytes& b) {
  auto r = msg::decode<msg::ReplayAck>(b);
  if (!r.is_ok() || (r.value()->ok() && r.value()->group_id() != group_id)) {
    a_.rejects->sampler++;
    log_warn("sampler: rejected the acknowledgement of group {}: {}", group_id,
             r.is_ok() ? fmt::format("it names group {}", r.value()->group_id()) : r.status().message());
    return persisted(group_id, false);
  }
  if (!r.value()->ok())
    log_error("sampler: replay did not store group {}: {}", group_id, r.value()->reason()->str());
  persisted(group_id, r.value()->ok());
}

void SamplerShell::persisted(uint64_t group_id, bool acked) {
  if (!logic_) return;
  Status s = logic_->on_persisted(group_id, acked);
  if (!s.is_ok()) log_error("sampler: {}", s.message());
  if (acked && a_.events) (void)a_.events->append("ack " + std::to_string(group_id));
  pump();
}

msg::Bytes SamplerShell::stats() {
  const SamplerCounters now = logic_ ? logic_->counters() : SamplerCounters{};
  const uint64_t persist_failures = logic_ ? logic_->persist_failures() : 0;
  const SamplerCounters& p = prev_;
  const uint64_t accepted = now.groups_accepted - p.groups_accepted;
  const uint64_t zero_var = now.groups_dropped_zero_variance - p.groups_dropped_zero_variance;
  const uint64_t dead_groups = now.groups_dropped_dead_letter - p.groups_dropped_dead_letter;
  const uint64_t groups = accepted + zero_var + dead_groups + (persist_failures - prev_persist_failures_);
  const uint64_t wasted = now.tokens_wasted() - p.tokens_wasted();
  const uint64_t tokens = now.tokens_generated - p.tokens_generated;

  std::vector<wire::MetricValue> v;
  auto real = [&](std::string name, double x) { v.push_back({std::move(name), x, false}); };
  auto count = [&](std::string name, uint64_t x) { v.push_back({std::move(name), double(x), true}); };
  const Window& w = w_;
  const double n = double(std::max<uint64_t>(w.rollouts, 1));
  real("reward_mean", w.rollouts ? w.reward_sum / n : 0.0);
  real("reward_shaped_mean", w.rollouts ? w.shaped_sum / n : 0.0);
  real("reward_std", w.rollouts ? std::sqrt(std::max(0.0, w.reward_sq / n - std::pow(w.reward_sum / n, 2))) : 0.0);
  double lsum = 0;
  for (int64_t l : w.lengths) lsum += double(l);
  real("length_mean", w.lengths.empty() ? 0.0 : lsum / double(w.lengths.size()));
  v.push_back({"length_p99", w.lengths.empty() ? 0.0 : double(nearest_rank_percentile(w.lengths, 0.99)), true});
  for (const auto& [reason, k] : w.finish) count("finish_reasons." + reason, k);
  for (const auto& [t, x] : w.reward_by_task) real("reward_by_task." + t, x.first / double(std::max<uint64_t>(x.second, 1)));
  count("groups", groups);
  count("dropped_zero_variance", zero_var);
  count("dead_lettered", retry_.dead_letters() - prev_dead_letters_);  // rollouts, not groups
  real("dropped_fraction", groups ? double(zero_var + dead_groups) / double(groups) : 0.0);
  count("wasted_tokens", wasted);
  real("wasted_fraction", tokens ? double(wasted) / double(tokens) : 0.0);
  count("rollouts_duplicate_dropped", tracker_.duplicates() - prev_duplicates_);
  count("requests_reissued", tracker_.reissued() - prev_reissued_);
  count("accepted_total", logic_ ? logic_->accepted() : 0);
  count("in_flight", logic_ ? logic_->in_flight() : 0);
  count("dropped_total", now.groups_dropped());
  count("generators", gens_.size());
  count("judges", judges_.size());

  prev_ = now;
  prev_persist_failures_ = persist_failures;
  prev_dead_letters_ = retry_.dead_letters();
  prev_duplicates_ = tracker_.duplicates();
  prev_reissued_ = tracker_.reissued();
  w_ = Window();
  return wire::metrics(sender_, "sampler", 0, unix_ms(), v);
}

}  // namespace

Status validate_sampler_config(const RunConfig& c) { return make_sampler(c, 1, 0).status(); }

caf::behavior sampler_actor(caf::event_based_actor* self, SamplerArgs a) {
  auto st = std::make_shared<SamplerShell>(self, std::move(a));
  st->start_members();
  // The shell holds handles of actors that (through the generators) hold this one: drop them
  // when the sampler terminates so every actor can be destroyed.
  std::weak_ptr<SamplerShell> weak = st;
  self->attach_functor([weak] {
    if (auto s = weak.lock()) s->shutdown();
  });
  self->set_down_handler([weak](caf::down_msg& m) {
    if (auto s = weak.lock()) s->on_down(m);
  });
  return {
      [st](start_atom) { st->pump(); },
      [st](rollout_atom, const msg::Bytes& b) { st->on_rollout(b); },
      [st](step_atom, const msg::Bytes& b) { st->on_step(b); },
      [st](stats_atom) -> msg::Bytes { return st->stats(); },
      [st](lease_atom) { st->check_leases(); },
      [st](add_generator_atom, const caf::actor& g, uint64_t id) { st->add_generator(g, id); },
      [st](remove_generator_atom, uint64_t id) { st->remove_generator(id, "removed"); },
      [st](add_judge_atom, const caf::actor& j, uint64_t id) { st->add_judge(j, id); },
      [st](remove_judge_atom, uint64_t id) { st->remove_judge(id, "removed"); },
      [st](membership_atom, const caf::actor& observer) { st->set_observer(observer); },
  };
}

}  // namespace m1::pipe
