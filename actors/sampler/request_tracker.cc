// RequestTracker: leases, reissues and duplicate detection of generation requests (contracts in
// request_tracker.h).
#include "actors/sampler/request_tracker.h"

#include <algorithm>

#include "base/check.h"

namespace m1 {

Status RequestTrackerOptions::validate() const {
  if (token_allowance_ms <= 0 || floor_ms <= 0)
    return Status::errorf("request tracker: token_allowance_ms {} and floor_ms {} must be > 0",
                          token_allowance_ms, floor_ms);
  if (max_backoff_doublings > 16)
    return Status::errorf("request tracker: max_backoff_doublings {} > 16", max_backoff_doublings);
  return Status::ok();
}

RequestTracker::RequestTracker(RequestTrackerOptions options) : options_(options) {
  Status s = options_.validate();
  M1_CHECK_MSG(s.is_ok(), s.message().c_str());
}

int64_t RequestTracker::allowance_ms(int64_t work_tokens, uint32_t timeouts) const {
  const int64_t base = options_.floor_ms + std::max<int64_t>(work_tokens, 0) * options_.token_allowance_ms;
  return base << std::min(timeouts, options_.max_backoff_doublings);
}

bool RequestTracker::is_member(uint64_t member) const {
  return std::find(members_.begin(), members_.end(), member) != members_.end();
}

uint64_t RequestTracker::pick(uint64_t exclude) {
  const size_t n = members_.size();
  if (n == 0) return 0;
  if (n == 1) return members_[0];
  uint64_t c = members_[rr_++ % n];
  if (c == exclude) c = members_[rr_++ % n];
  return c;
}

Assignment RequestTracker::assign(uint64_t gid, Group& g, uint64_t target, int64_t now_ms) {
  const int64_t work = int64_t(g.pending.size()) * g.work_per_request;
  if (g.member != 0) work_[g.member] -= work;
  Assignment a;
  a.group_id = gid;
  a.previous = g.member;
  a.member = target;
  a.timeouts = g.timeouts;
  for (const auto& [id, index] : g.pending) a.requests.push_back({id, index});
  g.member = target;
  if (target != 0) {
    g.sent = true;
    int64_t& w = work_[target];
    w += work;
    g.deadline_ms = now_ms + allowance_ms(w, g.timeouts);
    a.deadline_ms = g.deadline_ms;
  }
  return a;
}

std::pair<bool, std::vector<Assignment>> RequestTracker::add_member(uint64_t member, int64_t now_ms) {
  std::vector<Assignment> out;
  if (member == 0 || is_member(member)) return {false, out};
  members_.push_back(member);
  work_[member] = 0;
  for (auto& [gid, g] : groups_)
    if (g.member == 0) {
      const bool again = g.sent;
      out.push_back(assign(gid, g, member, now_ms));
      if (again) reissued_ += out.back().requests.size();
    }
  return {true, out};
}

std::pair<bool, std::vector<Assignment>> RequestTracker::remove_member(uint64_t member, int64_t now_ms) {
  std::vector<Assignment> out;
  auto it = std::find(members_.begin(), members_.end(), member);
  if (member == 0 || it == members_.end()) return {false, out};
  members_.erase(it);
  for (auto& [gid, g] : groups_)
    if (g.member == member) {
      out.push_back(assign(gid, g, pick(member), now_ms));
      if (out.back().member != 0) reissued_ += out.back().requests.size();
    }
  work_.erase(member);
  return {true, out};
}

Assignment RequestTracker::issue(uint64_t group_id, std::vector<TrackedRequest> requests,
                                 int64_t work_per_request, int64_t now_ms) {
  M1_CHECK_MSG(group_id != 0 && !groups_.count(group_id), "RequestTracker::issue: group id 0 or tracked");
  M1_CHECK_MSG(!requests.empty() && work_per_request >= 0, "RequestTracker::issue: no requests or work < 0");
  Group g;
  g.work_per_request = work_per_request;
  uint64_t prev = last_id_;
  for (const TrackedRequest& r : requests) {
    M1_CHECK_MSG(r.request_id > prev, "RequestTracker::issue: request ids must ascend past every issued id");
    prev = r.request_id;
    g.pending[r.request_id] = r.index;
    request_group_[r.request_id] = group_id;
  }
  if (first_id_ == 0) first_id_ = requests.front().request_id;
  last_id_ = prev;
  Group& stored = groups_.emplace(group_id, std::move(g)).first->second;
  return assign(group_id, stored, pick(0), now_ms);
}

std::optional<Answer> RequestTracker::lookup(uint64_t request_id) const {
  auto it = request_group_.find(request_id);
  if (it == request_group_.end()) return std::nullopt;
  const Group& g = groups_.at(it->second);
  return Answer{AnswerKind::kFirst, it->second, g.pending.at(request_id)};
}

Answer RequestTracker::answer(uint64_t request_id) {
  auto it = request_group_.find(request_id);
  if (it == request_group_.end()) {
    if (first_id_ != 0 && request_id >= first_id_ && request_id <= last_id_) {
      ++duplicates_;
      return Answer{AnswerKind::kDuplicate, 0, 0};
    }
    return Answer{AnswerKind::kUnknown, 0, 0};
  }
  const uint64_t gid = it->second;
  request_group_.erase(it);
  auto git = groups_.find(gid);
  Group& g = git->second;
  Answer a{AnswerKind::kFirst, gid, g.pending.at(request_id)};
  g.pending.erase(request_id);
  if (g.member != 0) work_[g.member] -= g.work_per_request;
  if (g.pending.empty()) groups_.erase(git);
  return a;
}

std::vector<Assignment> RequestTracker::overdue(int64_t now_ms) {
  std::vector<Assignment> out;
  for (auto& [gid, g] : groups_) {
    if (g.member == 0 || g.deadline_ms > now_ms) continue;
    ++g.timeouts;
    ++timeouts_;
    out.push_back(assign(gid, g, pick(g.member), now_ms));
    reissued_ += out.back().requests.size();
  }
  return out;
}

size_t RequestTracker::waiting() const {
  size_t n = 0;
  for (const auto& [gid, g] : groups_)
    if (g.member == 0) n += g.pending.size();
  return n;
}

size_t RequestTracker::outstanding_at(uint64_t member) const {
  size_t n = 0;
  for (const auto& [gid, g] : groups_)
    if (member != 0 && g.member == member) n += g.pending.size();
  return n;
}

std::optional<int64_t> RequestTracker::next_deadline() const {
  std::optional<int64_t> d;
  for (const auto& [gid, g] : groups_)
    if (g.member != 0 && (!d || g.deadline_ms < *d)) d = g.deadline_ms;
  return d;
}

}  // namespace m1
