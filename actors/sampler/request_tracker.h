// Leases on generation requests (pure logic: no CAF, no FlatBuffers, no clock; "now" is passed in
// as milliseconds on any monotonic clock). The sampler actor owns one RequestTracker; it decides
// which generator gets a group, when an unanswered request is overdue, who gets it instead, and
// whether an arriving Rollout is the first answer for its request or a duplicate.
//
// Members: the live generators, by member id (non-zero; the actor maps ids to actor handles), in
// the order they joined. A new group goes to the next member round robin (every request of a
// group to one member: its samples share one prompt feed). With no member, a group waits
// (member 0) and the next add_member() takes every waiting group.
//
// Deadlines (a lease per group issue): a group's requests share one deadline,
//   now + (floor_ms + token_allowance_ms · work) · 2^min(timeouts, max_backoff_doublings),
// where work = the prompt + max_new tokens of this group's requests plus those of every request
// the member already holds unanswered (it may have to get through all of them first: its queue is
// first in, first out) and timeouts = how many times this group's requests were already found
// overdue. Each token is charged as if decoded alone (a batched decode step is never slower per
// row than a step of one row), so the bound holds whatever the generator's batch.
//
// Overdue: a group whose deadline passed with requests unanswered is reissued: its unanswered
// requests go to the next member round robin that is not the one that failed to answer (the same
// one when it is the only member), with a fresh deadline. Reissues keep the request ids: a request
// is the same request sent again (same id, prompt, seed, budget), so the rollout id (= request id)
// stays unique whichever generator answers. remove_member() reassigns the removed member's groups
// at once (not counted as timeouts).
//
// Answers: the first Rollout for an outstanding request id is taken (whichever issue it answers:
// the superseded one's is as good as its replacement's); any later Rollout for an id issued here
// and no longer outstanding is a duplicate (counted in duplicates(), to be dropped). Ids are issued
// in increasing order, so "issued here" is the range [first issued, last issued] and no answered
// id needs remembering. An id outside it is unknown (not this sampler's: a reject).
//
// Thread safety: none (one owner, the sampler actor).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/status.h"

namespace m1 {

struct RequestTrackerOptions {
  // A pessimistic decode time per token for one sequence on a busy CPU: the small model decodes a
  // token at batch 1 in about 1 ms on this project's 2-core machines (docs/results.md), the
  // evaluator's timeout assumes the same 50 ms (learner_actor.cc, kEvalTokenAllowance).
  int64_t token_allowance_ms = 50;
  // Covers what is not decoding: the generator's start, a weights swap, requests parked until the
  // weights of their min_version arrive (a learner step away), scheduler hiccups.
  int64_t floor_ms = 60000;
  // Each timeout of the same group doubles its next allowance, up to 2^max_backoff_doublings: a
  // generator that is only slow is not flooded with copies of the requests it is working on.
  uint32_t max_backoff_doublings = 3;
  Status validate() const;  // allowance and floor > 0, doublings ≤ 16
};

struct TrackedRequest {
  uint64_t request_id = 0;
  uint32_t index = 0;  // position in the group
};

// A group's unanswered requests, (re)assigned to one member.
struct Assignment {
  uint64_t group_id = 0;
  uint64_t member = 0;    // where they go now (0: no member: they wait for add_member)
  uint64_t previous = 0;  // where they were (0: first issue, or they were waiting)
  std::vector<TrackedRequest> requests;  // ascending request id
  int64_t deadline_ms = 0;  // when member ≠ 0
  uint32_t timeouts = 0;    // times this group's requests were found overdue so far
};

enum class AnswerKind {
  kFirst,      // the first answer for an outstanding request: use it
  kDuplicate,  // issued here and already answered: drop (counted)
  kUnknown,    // never issued here: a reject
};

struct Answer {
  AnswerKind kind = AnswerKind::kUnknown;
  uint64_t group_id = 0;  // kFirst
  uint32_t index = 0;     // kFirst
};

class RequestTracker {
 public:
  // REQUIRES: options.validate() is ok (aborts otherwise).
  explicit RequestTracker(RequestTrackerOptions options = {});

  // floor + work·allowance, doubled per earlier timeout (capped): the lease length in ms.
  int64_t allowance_ms(int64_t work_tokens, uint32_t timeouts) const;

  // Adds a member (false in .first when it is 0 or already one); every waiting group goes to it.
  std::pair<bool, std::vector<Assignment>> add_member(uint64_t member, int64_t now_ms);
  // Removes a member (false in .first when it is not one); its groups go to the others at once,
  // round robin, or wait when none is left.
  std::pair<bool, std::vector<Assignment>> remove_member(uint64_t member, int64_t now_ms);
  bool is_member(uint64_t member) const;
  const std::vector<uint64_t>& members() const { return members_; }

  // Records a new group's requests and assigns it to the next member round robin (member 0 when
  // there is none). work_per_request = prompt tokens + max_new of each request.
  // REQUIRES: group_id non-zero and not tracked; requests non-empty, ids ascending, the first
  // greater than every id issued before; work_per_request ≥ 0 (aborts otherwise).
  Assignment issue(uint64_t group_id, std::vector<TrackedRequest> requests, int64_t work_per_request,
                   int64_t now_ms);

  // Where request_id stands, without changing anything: its group and index while outstanding.
  std::optional<Answer> lookup(uint64_t request_id) const;
  // A Rollout for request_id arrived: kFirst marks it answered (the caller checked that the
  // rollout's group and index match lookup()); kDuplicate is counted.
  Answer answer(uint64_t request_id);

  // Reissues every assigned group whose deadline is ≤ now_ms (ascending group id).
  std::vector<Assignment> overdue(int64_t now_ms);

  size_t outstanding() const { return request_group_.size(); }  // unanswered requests
  size_t waiting() const;                                       // ... of groups with no member
  size_t outstanding_at(uint64_t member) const;
  std::optional<int64_t> next_deadline() const;  // the earliest deadline of an assigned group
  uint64_t duplicates() const { return duplicates_; }  // kDuplicate answers so far
  // Requests sent again: overdue, or their member left (counted when they go to a member; a
  // group issued while there was no member is not counted when it is first sent).
  uint64_t reissued() const { return reissued_; }
  uint64_t timeouts() const { return timeouts_; }      // groups found overdue so far
  const RequestTrackerOptions& options() const { return options_; }

 private:
  struct Group {
    uint64_t member = 0;
    int64_t deadline_ms = 0;
    uint32_t timeouts = 0;
    int64_t work_per_request = 0;
    bool sent = false;  // assigned to a member at least once
    std::map<uint64_t, uint32_t> pending;  // request id → index
  };
  uint64_t pick(uint64_t exclude);
  // Moves group GID (unanswered requests) to TARGET with a fresh deadline; the assignment to send.
  Assignment assign(uint64_t gid, Group& g, uint64_t target, int64_t now_ms);

  RequestTrackerOptions options_;
  std::vector<uint64_t> members_;  // join order
  size_t rr_ = 0;
  std::map<uint64_t, int64_t> work_;  // member → work tokens of its unanswered requests
  std::map<uint64_t, Group> groups_;  // groups with unanswered requests
  std::unordered_map<uint64_t, uint64_t> request_group_;  // outstanding request id → group id
  uint64_t first_id_ = 0, last_id_ = 0;  // issued ids: [first_id_, last_id_] (0: none yet)
  uint64_t duplicates_ = 0, reissued_ = 0, timeouts_ = 0;
};

}  // namespace m1
