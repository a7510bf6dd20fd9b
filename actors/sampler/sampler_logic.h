// The dynamic sampler's pure logic (no CAF, no FlatBuffers), the public header of actors/sampler:
// it includes the prompt sources (prompt_source.h), the reward/length shaping and staleness rule
// (shaping.h) and the health metrics (health.h).
//
// DynamicSampler, one per run:
//   issue()          draws prompts from the curriculum (at the learner version as the schedule
//                    step) and opens a group of G rollout requests for each, with max_new from
//                    the staged length windows, while admission allows (below);
//   on_judged()      records one rollout's verdict; when all G of a group are recorded the group
//                    completes: R_i = judge reward + soft overlong penalty (if enabled)
//                    − format_penalty·(1 − format reward); a group
//                    whose R are all equal is dropped (dynamic sampling) and its tokens counted as
//                    wasted; otherwise A_i = GRPO advantage of R_i and the group is accepted (the
//                    actor sends it to replay);
//   on_persisted()   (options.await_persistence only) replay's answer for an accepted group: ok
//                    counts it as accepted; a failure frees its slot, so issue() opens a
//                    replacement. Until then the group occupies an in-flight slot;
//   on_dead_letter() a rollout whose judging (or generation) was given up: its group is dropped
//                    at once with the reason and counted, with every token it generated (also
//                    those of rollouts recorded later) counted as wasted.
//
// Admission (oversampling + staleness; shaping.h admit_batch): with quota =
// admitted_group_quota(learner_version − start_learner_version, min(lookahead, max_staleness),
// batch_groups) =
// the accepted groups of every batch the staleness rule admits (batches counted from this
// sampler's start), a new group is issued iff
//     accepted · oversample + in_flight < quota · oversample,
// where accepted counts groups accepted by this sampler plus options.accepted_before, and
// in_flight the groups issued and neither completed nor dropped (with options.await_persistence:
// plus the accepted groups whose durable write replay has not yet acknowledged; a group counts as
// accepted only once on_persisted(id, true) says so). With oversample = 1 accepted + in_flight never
// exceeds the quota, and every dropped group frees a slot that is refilled by the next issue():
// the sampler keeps issuing prompts until enough non-degenerate groups fill the admitted batches.
// oversample > 1 keeps more groups in flight, expecting drops (a group beyond the last admitted
// batch is still produced; replay enforces staleness at consumption and counts what it drops).
//
// Verdicts and dead letters for unknown groups, or for an index already recorded, are ignored
// and counted (duplicates after retries, late replies after a drop); an index ≥ G, a non-finite
// reward or a negative length is bad input: an error Status, nothing recorded. on_persisted for a
// group that is not awaiting persistence is an error Status, nothing changed.
// Counting identity: groups_issued = groups_accepted + groups_dropped() + in_flight() +
// persist_failures() (groups_accepted excludes options.accepted_before).
// Determinism: every draw (prompts, per-rollout sampling seeds) comes from one Rng seeded by
// options.seed, so the same calls in the same order give the same groups.
// Thread safety: none (one owner, the sampler actor).
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/sampler/health.h"
#include "actors/sampler/prompt_source.h"
#include "actors/sampler/shaping.h"
#include "actors/staleness.h"
#include "base/rng.h"
#include "base/status.h"

namespace m1 {

struct SamplerOptions {
  uint32_t group_size = 8;        // G, in [1, 4096]
  uint32_t batch_groups = 4;      // accepted groups per training batch, ≥ 1
  uint64_t max_staleness = kDefaultMaxStaleness;  // actors/staleness.h (0 = synchronous RL)
  double oversample = 1.0;        // ≥ 1, finite (see the admission rule above)
  // Batches issued ahead of the learner's: the quota uses min(lookahead, max_staleness) in place
  // of max_staleness. The staleness bound stays max_staleness (replay enforces it); a smaller
  // lookahead only keeps the generators from running further ahead than the learner needs, so
  // the data is fresher when the learner is the bottleneck.
  uint64_t lookahead = UINT64_MAX;
  AdvantageOptions advantage;
  OverlongOptions overlong;
  // Subtracted from R when a response's answer markup is malformed (format_reward 0), e.g. text
  // after "</answer>": without it a policy that never stops after its answer keeps full reward.
  // The judges' format reward is model/tasks.h check_format, under which a \boxed-only answer
  // to a JSONL math prompt is malformed too. Finite, ≥ 0; 0 = the judge's reward alone.
  double format_penalty = 0;
  // DAPO's dynamic sampling: a group whose rewards R are all equal is dropped (it has no gradient)
  // and replaced. false keeps it with advantage 0 (GRPO as published).
  bool dynamic_sampling = true;
  uint64_t seed = 0;
  uint64_t first_group_id = 1;    // ≥ 1; a resumed run passes its next unused id
  uint64_t first_request_id = 1;  // ≥ 1; likewise
  // The learner's version when this sampler starts; batches are counted from it.
  uint64_t start_learner_version = 0;
  // Groups accepted before this sampler started and not yet consumed (on a resume: the groups
  // still pending in replay); they count against the quota.
  uint64_t accepted_before = 0;
  size_t length_history = 4096;   // responses kept for the mean/p99 length metrics
  // false: a group is accepted when it completes with signal (kAccepted). true: it is accepted
  // only when on_persisted(id, true) confirms its durable write; until then it is in flight.
  bool await_persistence = false;
  Status validate() const;
};

struct IssuedRollout {
  uint64_t request_id = 0;  // non-zero, unique per sampler
  uint32_t index = 0;       // position in the group, < G
  uint64_t seed = 0;        // sampling seed for the generator
};

// One prompt to be sampled G times: the actor sends one GenerationRequest per rollout.
struct IssuedGroup {
  uint64_t group_id = 0;        // non-zero, unique per sampler
  SampledPrompt prompt;
  int64_t max_new = 0;          // thinking budget (the current length window)
  uint64_t issue_version = 0;   // learner version at issue: the oldest weights admitted
  std::vector<IssuedRollout> rollouts;  // G, in index order
};

struct JudgedRollout {
  uint32_t index = 0;         // < G
  uint64_t rollout_id = 0;
  double reward = 0;          // the judges' reward (repetition penalty included), finite
  double format_reward = 0;
  int64_t tokens = 0;         // response length, ≥ 0
  std::string reason;         // the judge's reason
  // Passed through to CompletedGroup; the sampler's logic does not read them.
  uint64_t judge_id = 0;      // the judge that gave the verdict (0 = unknown)
  std::string finish;         // the generator's finish reason ("eos", "length", …; "" = unknown)
};

struct ScoredRollout {
  JudgedRollout judged;
  double overlong = 0;   // soft overlong penalty added to the reward (≤ 0)
  double format = 0;     // −format_penalty·(1 − judged.format_reward) (≤ 0)
  double reward = 0;     // R = judged.reward + overlong + format: what the advantages use
  double advantage = 0;  // GRPO advantage (0 in a dropped group)
};

struct CompletedGroup {
  uint64_t group_id = 0;
  SampledPrompt prompt;
  int64_t max_new = 0;
  uint64_t issue_version = 0;
  std::vector<ScoredRollout> rollouts;  // G, in index order
  GroupStats stats;                     // of R (population std)
};

enum class GroupFate {
  kPending,              // recorded; the group still waits for rollouts
  kAccepted,             // complete with advantages: send `group` to replay (and, with
                         // options.await_persistence, report the outcome with on_persisted)
  kDroppedZeroVariance,  // complete but all R equal: dropped (group attached for inspection)
  kDroppedDeadLetter,    // dropped because a rollout was dead-lettered
  kIgnored,              // nothing to do (reason says why)
};

struct GroupUpdate {
  GroupFate fate = GroupFate::kPending;
  std::optional<CompletedGroup> group;  // kAccepted and kDroppedZeroVariance
  std::string reason;                   // the drop or ignore reason
  bool window_advanced = false;         // this completion advanced the length window
};

class DynamicSampler {
 public:
  // Error when options, the curriculum (empty) or the overlong settings are invalid.
  static Result<DynamicSampler> create(SamplerOptions options, Curriculum curriculum,
                                       LengthWindows windows);

  // Versions only move forward: a smaller version is ignored (returns false).
  bool set_learner_version(uint64_t version);
  uint64_t learner_version() const { return learner_version_; }

  // How many groups the admission rule lets issue() open now.
  uint64_t issuable() const;
  // Opens up to min(issuable(), limit) groups. Error only when the curriculum fails before any
  // group was opened (the groups opened before a failure are returned; the next call reports it).
  Result<std::vector<IssuedGroup>> issue(size_t limit = std::numeric_limits<size_t>::max());

  Result<GroupUpdate> on_judged(uint64_t group_id, const JudgedRollout& rollout);
  Result<GroupUpdate> on_dead_letter(uint64_t group_id, uint32_t index, int64_t tokens,
                                     const std::string& reason);
  // Replay's answer for a group on_judged returned as kAccepted (options.await_persistence):
  // ok = its durable write was acknowledged → accepted (accepted() and counters().groups_accepted
  // grow); !ok = replay failed or refused it → counted in persist_failures() and its slot freed.
  // Either way it leaves in_flight(). Error (nothing changed) when the group is not awaiting
  // persistence (unknown, already answered, or await_persistence is off).
  Status on_persisted(uint64_t group_id, bool ok);

  // issued, not completed nor dropped; with await_persistence also accepted groups awaiting
  // on_persisted
  uint64_t in_flight() const { return in_flight_; }
  size_t open_groups() const { return groups_.size(); }  // in flight + dropped awaiting stragglers
  // Whether verdicts / dead letters for the group are still expected: issued and not yet completed,
  // or dropped with rollouts unresolved. A group awaiting persistence is not tracked here.
  bool tracking(uint64_t group_id) const { return groups_.count(group_id) != 0; }
  uint64_t awaiting_persistence() const { return awaiting_persistence_.size(); }
  uint64_t persist_failures() const { return persist_failures_; }
  uint64_t accepted() const { return accepted_; }        // includes options.accepted_before
  uint64_t next_group_id() const { return next_group_id_; }
  uint64_t next_request_id() const { return next_request_id_; }
  const SamplerOptions& options() const { return options_; }
  const SamplerCounters& counters() const { return counters_; }
  const TaskRewardStats& task_rewards() const { return task_rewards_; }
  TaskRewardStats& task_rewards() { return task_rewards_; }
  const RecentLengths& lengths() const { return lengths_; }
  const LengthWindows& windows() const { return windows_; }
  const Curriculum& curriculum() const { return curriculum_; }
  const Rng& rng() const { return rng_; }

 private:
  struct Group {
    IssuedGroup issued;  // rollouts cleared: only the group's identity is kept
    std::vector<std::optional<JudgedRollout>> judged;
    std::vector<bool> resolved;  // judged or dead-lettered
    uint32_t resolved_count = 0;
    bool dropped = false;
    std::string drop_reason;
  };

  DynamicSampler(SamplerOptions options, Curriculum curriculum, LengthWindows windows);
  GroupUpdate complete(Group& g);
  void resolve(std::map<uint64_t, Group>::iterator it, uint32_t index);

  SamplerOptions options_;
  Curriculum curriculum_;
  LengthWindows windows_;
  Rng rng_;
  uint64_t learner_version_;
  uint64_t accepted_;
  uint64_t in_flight_ = 0;
  uint64_t next_group_id_, next_request_id_;
  std::map<uint64_t, Group> groups_;
  std::set<uint64_t> awaiting_persistence_;  // accepted groups awaiting on_persisted
  uint64_t persist_failures_ = 0;
  SamplerCounters counters_;
  TaskRewardStats task_rewards_;
  RecentLengths lengths_;
};

}  // namespace m1
