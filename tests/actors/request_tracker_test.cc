// RequestTracker (actors/sampler/request_tracker.h): lease deadlines, reissue of overdue groups to
// another member, membership changes, and duplicate answers dropped by request id. Time is a
// plain number passed in.
#include <doctest/doctest.h>

#include "actors/sampler/request_tracker.h"

using namespace m1;

namespace {

RequestTrackerOptions opts() {
  RequestTrackerOptions o;
  o.token_allowance_ms = 10;
  o.floor_ms = 1000;
  o.max_backoff_doublings = 2;
  return o;
}

std::vector<TrackedRequest> reqs(uint64_t first, uint32_t n) {
  std::vector<TrackedRequest> r;
  for (uint32_t i = 0; i < n; ++i) r.push_back({first + i, i});
  return r;
}

std::vector<uint64_t> ids(const Assignment& a) {
  std::vector<uint64_t> v;
  for (const auto& r : a.requests) v.push_back(r.request_id);
  return v;
}

}  // namespace

TEST_CASE("request tracker: allowance = floor + work · per-token, doubled per timeout up to the cap") {
  RequestTracker t(opts());
  CHECK(t.allowance_ms(0, 0) == 1000);
  CHECK(t.allowance_ms(50, 0) == 1500);
  CHECK(t.allowance_ms(50, 1) == 3000);
  CHECK(t.allowance_ms(50, 2) == 6000);
  CHECK(t.allowance_ms(50, 9) == 6000);  // capped at 2 doublings
  CHECK_FALSE(RequestTrackerOptions{0, 1, 0}.validate().is_ok());
  CHECK_FALSE(RequestTrackerOptions{1, 0, 0}.validate().is_ok());
  CHECK_FALSE(RequestTrackerOptions{1, 1, 17}.validate().is_ok());
  CHECK(RequestTrackerOptions{}.validate().is_ok());
}

TEST_CASE("request tracker: groups go round robin; a deadline counts the work the member already holds") {
  RequestTracker t(opts());
  CHECK(t.add_member(7, 0).first);
  CHECK(t.add_member(9, 0).first);
  CHECK_FALSE(t.add_member(9, 0).first);
  CHECK_FALSE(t.add_member(0, 0).first);
  Assignment a = t.issue(1, reqs(100, 2), 20, 0);  // 2 requests · 20 tokens
  CHECK(a.member == 7);
  CHECK(a.previous == 0);
  CHECK(a.deadline_ms == 1000 + 40 * 10);
  Assignment b = t.issue(2, reqs(102, 2), 20, 5);
  CHECK(b.member == 9);
  CHECK(b.deadline_ms == 5 + 1000 + 40 * 10);
  Assignment c = t.issue(3, reqs(104, 1), 30, 10);  // behind group 1's 40 tokens on member 7
  CHECK(c.member == 7);
  CHECK(c.deadline_ms == 10 + 1000 + 70 * 10);
  CHECK(t.outstanding() == 5);
  CHECK(t.outstanding_at(7) == 3);
  CHECK(t.next_deadline() == 1400);
  // Answers free the member's work: a group issued later is not charged for them.
  CHECK(t.answer(100).kind == AnswerKind::kFirst);
  CHECK(t.answer(101).kind == AnswerKind::kFirst);
  CHECK(t.answer(104).kind == AnswerKind::kFirst);
  Assignment d = t.issue(4, reqs(105, 1), 30, 20);
  CHECK(d.member == 9);
  CHECK(d.deadline_ms == 20 + 1000 + 70 * 10);  // behind group 2's 40 tokens
  CHECK(t.next_deadline() == 1405);
}

TEST_CASE("request tracker: an overdue group is reissued, with the same ids, to another member") {
  RequestTracker t(opts());
  t.add_member(7, 0);
  t.add_member(9, 0);
  t.issue(1, reqs(100, 3), 10, 0);  // on 7, deadline 1300
  CHECK(t.answer(101).kind == AnswerKind::kFirst);
  CHECK(t.overdue(1299).empty());
  auto r = t.overdue(1300);
  REQUIRE(r.size() == 1);
  CHECK(r[0].group_id == 1);
  CHECK(r[0].previous == 7);
  CHECK(r[0].member == 9);
  CHECK(ids(r[0]) == std::vector<uint64_t>{100, 102});  // only the unanswered ones
  CHECK(r[0].requests[1].index == 2);
  CHECK(r[0].timeouts == 1);
  CHECK(r[0].deadline_ms == 1300 + 2 * (1000 + 20 * 10));  // doubled
  CHECK(t.reissued() == 2);
  CHECK(t.timeouts() == 1);
  CHECK(t.outstanding_at(7) == 0);
  CHECK(t.outstanding_at(9) == 2);
  // Next time it is overdue it leaves 9 (for 7), with the allowance doubled again.
  auto r2 = t.overdue(1300 + 2400);
  REQUIRE(r2.size() == 1);
  CHECK(r2[0].previous == 9);
  CHECK(r2[0].member == 7);
  CHECK(r2[0].deadline_ms == 3700 + 4 * 1200);
}

TEST_CASE("request tracker: with one member an overdue group goes back to it") {
  RequestTracker t(opts());
  t.add_member(7, 0);
  t.issue(1, reqs(100, 1), 0, 0);
  auto r = t.overdue(1000);
  REQUIRE(r.size() == 1);
  CHECK(r[0].member == 7);
  CHECK(r[0].previous == 7);
  CHECK(ids(r[0]) == std::vector<uint64_t>{100});
}

TEST_CASE("request tracker: the first answer wins; later ones are duplicates, counted; foreign ids unknown") {
  RequestTracker t(opts());
  t.add_member(7, 0);
  t.add_member(9, 0);
  t.issue(1, reqs(100, 2), 10, 0);
  t.issue(2, reqs(102, 1), 10, 0);
  auto l = t.lookup(101);
  REQUIRE(l.has_value());
  CHECK(l->group_id == 1);
  CHECK(l->index == 1);
  CHECK(t.lookup(101).has_value());  // lookup changes nothing
  CHECK_FALSE(t.lookup(99).has_value());
  // Group 1 overdue → on 9. The reissue answers first; the superseded issue's answer is late.
  REQUIRE(t.overdue(1200).size() == 2);
  Answer a = t.answer(100);
  CHECK(a.kind == AnswerKind::kFirst);
  CHECK(a.group_id == 1);
  CHECK(a.index == 0);
  CHECK(t.answer(100).kind == AnswerKind::kDuplicate);  // the late answer of the first issue
  CHECK(t.answer(100).kind == AnswerKind::kDuplicate);
  CHECK(t.duplicates() == 2);
  CHECK_FALSE(t.lookup(100).has_value());
  // The superseded issue may also answer first: then the reissue's answer is the duplicate.
  CHECK(t.answer(101).kind == AnswerKind::kFirst);
  CHECK(t.answer(101).kind == AnswerKind::kDuplicate);
  CHECK(t.answer(99).kind == AnswerKind::kUnknown);   // below every issued id
  CHECK(t.answer(103).kind == AnswerKind::kUnknown);  // never issued
  CHECK(t.duplicates() == 3);
  CHECK(t.outstanding() == 1);
  CHECK(t.answer(102).kind == AnswerKind::kFirst);
  CHECK(t.outstanding() == 0);
  CHECK_FALSE(t.next_deadline().has_value());
  CHECK(t.overdue(1000000).empty());
}

TEST_CASE("request tracker: a removed member's groups move at once; with no member they wait for the next") {
  RequestTracker t(opts());
  t.add_member(7, 0);
  t.add_member(9, 0);
  t.issue(1, reqs(100, 2), 10, 0);  // 7
  t.issue(2, reqs(102, 2), 10, 0);  // 9
  t.issue(3, reqs(104, 1), 10, 0);  // 7
  CHECK(t.answer(104).kind == AnswerKind::kFirst);
  auto [removed, moved] = t.remove_member(7, 50);
  CHECK(removed);
  REQUIRE(moved.size() == 1);  // group 3 is answered
  CHECK(moved[0].group_id == 1);
  CHECK(moved[0].previous == 7);
  CHECK(moved[0].member == 9);
  CHECK(moved[0].timeouts == 0);                        // not a timeout: no backoff
  CHECK(moved[0].deadline_ms == 50 + 1000 + 40 * 10);  // behind group 2's 20 tokens
  CHECK(t.reissued() == 2);
  CHECK(t.members() == std::vector<uint64_t>{9});
  CHECK_FALSE(t.remove_member(7, 50).first);
  // The last member goes: everything waits; new groups wait too; overdue() leaves them alone.
  auto [removed9, moved9] = t.remove_member(9, 60);
  CHECK(removed9);
  CHECK(moved9.size() == 2);
  for (const auto& m : moved9) CHECK(m.member == 0);
  Assignment w = t.issue(4, reqs(105, 1), 10, 70);
  CHECK(w.member == 0);
  CHECK(t.waiting() == 5);
  CHECK(t.overdue(1000000).empty());
  CHECK_FALSE(t.next_deadline().has_value());
  // A late answer from the removed member is still the first answer.
  CHECK(t.answer(102).kind == AnswerKind::kFirst);
  auto [added, taken] = t.add_member(11, 100);
  CHECK(added);
  REQUIRE(taken.size() == 3);
  for (const auto& m : taken) CHECK(m.member == 11);
  CHECK(ids(taken[0]) == std::vector<uint64_t>{100, 101});
  CHECK(ids(taken[1]) == std::vector<uint64_t>{103});
  CHECK(ids(taken[2]) == std::vector<uint64_t>{105});
  CHECK(t.reissued() == 2 + 3);  // group 4 was never sent before: not a reissue
  CHECK(t.waiting() == 0);
  CHECK(t.outstanding_at(11) == 4);
}
