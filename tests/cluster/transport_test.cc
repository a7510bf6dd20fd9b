// cluster/: frames, the receiving side's filter, LoopbackTransport's faults, and endpoints with
// proxies on two simulated nodes under CAF's deterministic test coordinator.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "cluster/loopback_transport.h"
#include "cluster/node.h"
#include "tests/actors/caf_test_system.h"

using namespace m1;
using namespace m1::cluster;

namespace {

msg::Bytes raw(std::initializer_list<uint8_t> b) { return msg::Bytes(std::vector<uint8_t>(b)); }

msg::Bytes oneway(NodeId node, uint64_t inc, uint64_t seq, const std::string& tag = "ping") {
  FrameHeader h{1, 2, node, inc, seq, 0, msg::FrameKind::Oneway, tag};
  return encode_frame(h, msg::PayloadShape::One, {raw({1, 2, 3})}).value();
}

using ping_atom = caf::atom_constant<caf::atom("ping")>;
using echo_atom = caf::atom_constant<caf::atom("echo")>;

// Two nodes (1 and 2) on a LoopbackTransport driven by the test coordinator's clock.
struct TwoNodes {
  test::TestSystem ts;
  LoopbackTransport net;
  std::shared_ptr<NodeCounters> c1 = std::make_shared<NodeCounters>(), c2 = std::make_shared<NodeCounters>();
  caf::actor ep1, ep2;

  std::vector<caf::actor> spawned;  // stopped at the end: the actor system waits for every actor

  explicit TwoNodes(uint64_t seed, uint64_t inc2 = 1) : net(seed, [this] { return now_us(); }) {
    ep1 = spawn(endpoint_actor, EndpointArgs{&net, 1, 1, c1});
    ep2 = spawn(endpoint_actor, EndpointArgs{&net, 2, inc2, c2});
    attach(1, ep1);
    attach(2, ep2);
  }
  ~TwoNodes() {
    for (auto& a : spawned) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    ts.sched->run();
  }
  template <class... Ts>
  caf::actor spawn(Ts&&... xs) {
    spawned.push_back(ts.sys->spawn(std::forward<Ts>(xs)...));
    return spawned.back();
  }
  int64_t now_us() {
    return std::chrono::duration_cast<std::chrono::microseconds>(ts.sched->clock().now().time_since_epoch()).count();
  }
  void attach(NodeId n, caf::actor ep) {
    REQUIRE(net.attach(n, [ep](const msg::Bytes& f) { caf::anon_send(ep, frame_atom::value, f); }).is_ok());
  }
  // Runs actors and deliveries until nothing is left before time LIMIT_US (timers included).
  void pump(int64_t limit_us = 10'000'000) {
    for (;;) {
      ts.sched->run();
      if (net.deliver_due()) continue;
      int64_t next = limit_us;
      if (auto d = net.next_due()) next = std::min(next, *d);
      const auto& sch = ts.sched->clock().schedule();
      if (!sch.empty())
        next = std::min<int64_t>(next, std::chrono::duration_cast<std::chrono::microseconds>(
                                           sch.begin()->first.time_since_epoch()).count());
      if (next >= limit_us || next <= now_us()) {
        if (next > now_us() || next >= limit_us) break;
      }
      ts.sched->advance_time(std::chrono::microseconds(next - now_us()));
    }
  }
};

caf::behavior echo(caf::event_based_actor*, int* calls) {
  return {[=](echo_atom, const msg::Bytes& b) -> msg::Bytes {
    ++*calls;
    std::vector<uint8_t> v = b.vec();
    v.push_back(0xee);
    return msg::Bytes(std::move(v));
  }};
}

}  // namespace

TEST_CASE("encode_frame round-trips a header and its payloads; the codec refuses a bad tag") {
  FrameHeader h{7, 9, 3, 2, 5, 11, msg::FrameKind::Request, "take"};
  auto f = encode_frame(h, msg::PayloadShape::Many, {raw({1}), raw({}), raw({4, 5})});
  REQUIRE(f.is_ok());
  auto d = msg::decode<msg::Frame>(f.value());
  REQUIRE(d.is_ok());
  const FrameHeader g = header_of(*d.value());
  CHECK(g.source == 7);
  CHECK(g.destination == 9);
  CHECK(g.request_id == 11);
  CHECK(g.tag == "take");
  auto p = payloads_of(*d.value());
  REQUIRE(p.size() == 3);
  CHECK(p[2].vec() == std::vector<uint8_t>{4, 5});
  h.tag = "Take";
  auto bad = encode_frame(h, msg::PayloadShape::Empty, {});
  REQUIRE_FALSE(bad.is_ok());
  CHECK(bad.status().message().find("Frame.tag") != std::string::npos);
}

TEST_CASE("FrameFilter: each seq once per incarnation; older incarnations are fenced; a new one starts afresh") {
  FrameFilter f;
  using V = FrameFilter::Verdict;
  CHECK(f.admit(4, 1, 1) == V::kAccept);
  CHECK(f.admit(4, 1, 3) == V::kAccept);
  CHECK(f.admit(4, 1, 1) == V::kDuplicate);
  CHECK(f.admit(4, 1, 2) == V::kAccept);  // reordered, not a duplicate
  CHECK(f.admit(5, 1, 1) == V::kAccept);  // per node
  CHECK(f.admit(4, 2, 1) == V::kAccept);  // restarted: seqs start again
  CHECK(f.incarnation_of(4) == 2);
  CHECK(f.admit(4, 1, 9) == V::kStaleIncarnation);
  // Beyond the window: an old seq counts as a duplicate, the window's seqs stay bounded.
  for (uint64_t s = 2; s <= FrameFilter::kWindow + 10; ++s) REQUIRE(f.admit(4, 2, s) == V::kAccept);
  CHECK(f.admit(4, 2, 5) == V::kDuplicate);
}

TEST_CASE("LoopbackTransport: the same seed gives the same deliveries; faults are counted") {
  auto run = [](uint64_t seed) {
    int64_t now = 0;
    LoopbackTransport t(seed, [&] { return now; });
    t.set_faults({0.2, 0.2, 0, 1000});
    std::vector<uint64_t> got;
    REQUIRE(t.attach(2, [&](const msg::Bytes& f) { got.push_back(msg::decode<msg::Frame>(f).value()->seq()); }).is_ok());
    for (uint64_t s = 1; s <= 200; ++s) t.send(1, 2, oneway(1, 1, s));
    for (now = 0; now <= 1000; now += 50) t.deliver_due();
    CHECK(t.in_flight() == 0);
    const auto& st = t.stats();
    CHECK(st.sent == 200);
    CHECK(st.delivered == 200 - st.dropped + st.duplicated);
    CHECK(st.dropped > 10);
    CHECK(st.duplicated > 10);
    return got;
  };
  auto a = run(42), b = run(42), c = run(43);
  CHECK(a == b);
  CHECK(a != c);
  bool reordered = false;
  for (size_t i = 1; i < a.size(); ++i) reordered |= a[i] < a[i - 1];
  CHECK(reordered);
}

TEST_CASE("LoopbackTransport: partitions cut both ways until healed; a detached node receives nothing") {
  int64_t now = 0;
  LoopbackTransport t(1, [&] { return now; });
  int at2 = 0, at3 = 0;
  REQUIRE(t.attach(2, [&](const msg::Bytes&) { ++at2; }).is_ok());
  REQUIRE(t.attach(3, [&](const msg::Bytes&) { ++at3; }).is_ok());
  CHECK_FALSE(t.attach(2, [](const msg::Bytes&) {}).is_ok());
  t.partition(3, 2);
  t.send(2, 3, oneway(2, 1, 1));
  t.send(3, 2, oneway(3, 1, 1));
  t.send(1, 2, oneway(1, 1, 1));
  t.deliver_due();
  CHECK(at2 == 1);
  CHECK(at3 == 0);
  CHECK(t.stats().partitioned == 2);
  t.heal();
  t.send(2, 3, oneway(2, 1, 2));
  t.detach(2);
  t.send(3, 2, oneway(3, 1, 2));
  t.deliver_due();
  CHECK(at3 == 1);
  CHECK(t.stats().undeliverable == 1);
  t.set_faults({0, 0, 100, 100});
  t.send(1, 3, oneway(1, 1, 2));
  t.purge(1);
  now = 200;
  t.deliver_due();
  CHECK(at3 == 1);
  CHECK(t.stats().purged == 1);
}

TEST_CASE("a request through a proxy reaches the remote actor and its answer comes back, once, under duplication") {
  TwoNodes n(7);
  n.net.set_faults({0, 0.5, 10, 500});
  int calls = 0;
  auto target = n.spawn(echo, &calls);
  caf::anon_send(n.ep2, register_atom::value, uint64_t(0x99), target);
  caf::anon_send(n.ep1, route_atom::value, uint64_t(0x99), NodeId(2));
  auto proxy = n.spawn(proxy_actor, n.ep1, uint64_t(0x99));
  n.pump();
  std::vector<std::vector<uint8_t>> answers;
  auto client = n.spawn([&](caf::event_based_actor* self) {
    for (uint8_t i = 0; i < 20; ++i)
      self->request(proxy, std::chrono::seconds(5), echo_atom::value, raw({i})).then([&](const msg::Bytes& r) {
        answers.push_back(r.vec());
      });
  });
  n.pump();
  CHECK(answers.size() == 20);
  CHECK(calls == 20);  // duplicated requests were dropped by the receiving endpoint
  CHECK(n.c2->duplicates + n.c1->duplicates == n.net.stats().duplicated);
  for (const auto& a : answers) {
    REQUIRE(a.size() == 2);
    CHECK(a[1] == 0xee);
  }
}

TEST_CASE("a request to a node that is down or unrouted fails the requester's promise; stale frames are fenced") {
  TwoNodes n(3);
  int calls = 0;
  auto target = n.spawn(echo, &calls);
  caf::anon_send(n.ep2, register_atom::value, uint64_t(0x99), target);
  caf::anon_send(n.ep1, route_atom::value, uint64_t(0x99), NodeId(2));
  auto proxy = n.spawn(proxy_actor, n.ep1, uint64_t(0x99));
  auto nowhere = n.spawn(proxy_actor, n.ep1, uint64_t(0x1234));
  n.pump();
  n.net.detach(2);  // node 2 crashed: the request is lost
  std::vector<std::string> errors;
  auto client = n.spawn([&](caf::event_based_actor* self) {
    self->request(proxy, std::chrono::seconds(3600), echo_atom::value, raw({1}))
        .then([&](const msg::Bytes&) { errors.push_back("answered"); },
              [&](caf::error& e) { errors.push_back(n.ts.sys->render(e)); });
    self->request(nowhere, std::chrono::seconds(3600), echo_atom::value, raw({1}))
        .then([&](const msg::Bytes&) { errors.push_back("answered"); },
              [&](caf::error& e) { errors.push_back(n.ts.sys->render(e)); });
  });
  n.pump();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("no route to actor 4660") != std::string::npos);
  caf::anon_send(n.ep1, node_down_atom::value, NodeId(2));
  n.pump();
  REQUIRE(errors.size() == 2);
  CHECK(errors[1].find("node 2 is down") != std::string::npos);
  CHECK(n.c1->failed_by_node_down == 1);
  CHECK(calls == 0);
  // Node 2 restarts with incarnation 2; a frame of its first incarnation still in flight is fenced.
  auto ep2b = n.spawn(endpoint_actor, EndpointArgs{&n.net, 2, 2, n.c2});
  n.attach(2, ep2b);
  n.net.send(2, 1, oneway(2, 2, 1));
  n.net.send(2, 1, oneway(2, 1, 50));
  n.pump();
  CHECK(n.c1->stale == 1);
  CHECK(n.c1->no_actor == 1);  // the incarnation-2 frame was admitted (no actor 2 on node 1)
}
