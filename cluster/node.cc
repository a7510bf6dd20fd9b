#include "cluster/node.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/log.h"
#include "base/planted.h"

namespace m1::cluster {

namespace {

struct Pending {
  caf::response_promise rp;
  NodeId node = 0;
  caf::actor_clock::time_point deadline;
};

struct EndpointState {
  std::map<uint64_t, caf::actor> local;   // actor id → actor on this node
  std::map<caf::actor_addr, uint64_t> ids;  // ... and back, to name a frame's source
  std::map<uint64_t, NodeId> routes;      // remote actor id → node
  std::map<uint64_t, Pending> pending;    // request id → promise of the local requester
  FrameFilter filter;
  uint64_t seq = 0, next_request = 0;
};

// The tag and payloads of an actor message of shape (atom), (atom, Bytes) or (atom, [Bytes]).
bool split_message(const caf::message& m, std::string* tag, msg::PayloadShape* shape, std::vector<msg::Bytes>* out) {
  if (m.match_elements<caf::atom_value>()) {
    *shape = msg::PayloadShape::Empty;
  } else if (m.match_elements<caf::atom_value, msg::Bytes>()) {
    *shape = msg::PayloadShape::One;
    out->push_back(m.get_as<msg::Bytes>(1));
  } else if (m.match_elements<caf::atom_value, std::vector<msg::Bytes>>()) {
    *shape = msg::PayloadShape::Many;
    *out = m.get_as<std::vector<msg::Bytes>>(1);
  } else {
    return false;
  }
  *tag = caf::to_string(m.get_as<caf::atom_value>(0));
  return true;
}

caf::message join_message(const std::string& tag, msg::PayloadShape shape, std::vector<msg::Bytes> p) {
  const caf::atom_value a = caf::atom_from_string(tag);
  switch (shape) {
    case msg::PayloadShape::Empty: return caf::make_message(a);
    case msg::PayloadShape::One: return caf::make_message(a, std::move(p.at(0)));
    case msg::PayloadShape::Many: return caf::make_message(a, std::move(p));
  }
  return caf::make_message(a);
}

}  // namespace

caf::behavior endpoint_actor(caf::event_based_actor* self, EndpointArgs a) {
  auto st = std::make_shared<EndpointState>();
  auto counters = a.counters ? a.counters : std::make_shared<NodeCounters>();

  // Sends one frame to NODE; false when it could not be encoded (logged: a bug, not bad input).
  auto send_frame = [=](NodeId node, FrameHeader h, msg::PayloadShape shape, const std::vector<msg::Bytes>& payloads,
                        std::string_view reason) {
    h.source_node = a.node;
    h.incarnation = a.incarnation;
    h.seq = ++st->seq;
    auto f = encode_frame(h, shape, payloads, reason);
    if (!f.is_ok()) {
      log_error("node {}: frame '{}' for actor {} not sent: {}", a.node, h.tag, h.destination, f.status().message());
      return false;
    }
    ++counters->frames_out;
    a.transport->send(a.node, node, std::move(f).value());
    return true;
  };
  auto fail_pending = [=](uint64_t rid, caf::sec code, const std::string& why) {
    auto it = st->pending.find(rid);
    if (it == st->pending.end()) return;
    it->second.rp.deliver(caf::make_error(code, why));
    st->pending.erase(it);
  };
  auto source_id = [=]() -> uint64_t {
    auto it = st->ids.find(caf::actor_cast<caf::actor_addr>(self->current_sender()));
    return it == st->ids.end() ? (a.node << 32) : it->second;  // unnamed local senders speak as the node
  };

  self->delayed_send(self, kSweepInterval, sweep_atom::value);
  return {
      [=](register_atom, uint64_t id, const caf::actor& local) {
        st->local[id] = local;
        st->ids[caf::actor_cast<caf::actor_addr>(local)] = id;
      },
      [=](route_atom, uint64_t id, NodeId node) { st->routes[id] = node; },
      // From a proxy (delegated: a request's promise is ours to keep).
      [=](out_atom, uint64_t dest, const caf::message& m) {
        const bool is_request = self->current_mailbox_element()->mid.is_request();
        caf::response_promise rp;
        if (is_request) rp = self->make_response_promise();
        auto r = st->routes.find(dest);
        FrameHeader h;
        msg::PayloadShape shape;
        std::vector<msg::Bytes> payloads;
        if (r == st->routes.end() || !split_message(m, &h.tag, &shape, &payloads)) {
          if (r == st->routes.end()) ++counters->no_route; else ++counters->malformed;
          if (is_request)
            rp.deliver(caf::make_error(caf::sec::invalid_argument,
                                       r == st->routes.end() ? "no route to actor " + std::to_string(dest)
                                                             : "message shape cannot cross nodes"));
          return;
        }
        h.source = source_id();
        h.destination = dest;
        if (is_request) {
          h.kind = msg::FrameKind::Request;
          h.request_id = ++st->next_request;
          st->pending[h.request_id] = Pending{rp, r->second, self->clock().now() + kPendingTimeout};
        }
        if (!send_frame(r->second, h, shape, payloads, {}) && is_request)
          fail_pending(h.request_id, caf::sec::invalid_argument, "frame could not be encoded");
      },
      // From the transport.
      [=](frame_atom, const msg::Bytes& bytes) {
        ++counters->frames_in;
        auto f = msg::decode<msg::Frame>(bytes);
        if (!f.is_ok()) {
          ++counters->malformed;
          log_warn("node {}: frame refused: {}", a.node, f.status().message());
          return;
        }
        const msg::Frame& fr = *f.value();
        switch (st->filter.admit(fr.source_node(), fr.incarnation(), fr.seq())) {
          case FrameFilter::Verdict::kAccept: break;
          case FrameFilter::Verdict::kDuplicate:
            if (planted_bugs().dedupe_off) break;  // a planted bug (base/planted.h): the duplicate goes through
            ++counters->duplicates;
            return;
          case FrameFilter::Verdict::kStaleIncarnation: ++counters->stale; return;
        }
        const FrameHeader h = header_of(fr);
        if (h.kind == msg::FrameKind::Response || h.kind == msg::FrameKind::Failure) {
          auto it = st->pending.find(h.request_id);
          if (it == st->pending.end()) {
            ++counters->orphan_responses;
            return;
          }
          if (h.kind == msg::FrameKind::Failure) {
            return fail_pending(h.request_id, caf::sec::runtime_error, fr.reason()->str());
          }
          if (fr.shape() != msg::PayloadShape::One) {
            ++counters->malformed;
            return fail_pending(h.request_id, caf::sec::invalid_argument, "response without exactly one payload");
          }
          it->second.rp.deliver(payloads_of(fr).at(0));
          st->pending.erase(it);
          return;
        }
        auto local = st->local.find(h.destination);
        FrameHeader back;
        back.source = h.destination;
        back.destination = h.source;
        back.request_id = h.request_id;
        back.tag = h.tag;
        if (local == st->local.end()) {
          ++counters->no_actor;
          if (h.kind == msg::FrameKind::Request) {
            back.kind = msg::FrameKind::Failure;
            send_frame(h.source_node, back, msg::PayloadShape::Empty, {},
                       "no actor " + std::to_string(h.destination) + " on node " + std::to_string(a.node));
          }
          return;
        }
        caf::message m = join_message(h.tag, fr.shape(), payloads_of(fr));
        if (h.kind == msg::FrameKind::Oneway) {
          self->send(local->second, std::move(m));
          return;
        }
        const NodeId from = h.source_node;
        self->request(local->second, kPendingTimeout, std::move(m))
            .then(
                [=](const msg::Bytes& reply) mutable {
                  back.kind = msg::FrameKind::Response;
                  send_frame(from, back, msg::PayloadShape::One, {reply}, {});
                },
                [=](caf::error& e) mutable {
                  back.kind = msg::FrameKind::Failure;
                  std::string why = self->system().render(e);
                  if (why.empty()) why = "request failed";
                  send_frame(from, back, msg::PayloadShape::Empty, {}, why.substr(0, 1024));
                });
      },
      [=](node_down_atom, NodeId node) {
        std::vector<uint64_t> ids;
        for (const auto& [rid, p] : st->pending)
          if (p.node == node) ids.push_back(rid);
        for (uint64_t rid : ids) {
          ++counters->failed_by_node_down;
          fail_pending(rid, caf::sec::request_receiver_down, "node " + std::to_string(node) + " is down");
        }
      },
      [=](sweep_atom) {
        const auto now = self->clock().now();
        std::vector<uint64_t> ids;
        for (const auto& [rid, p] : st->pending)
          if (p.deadline <= now) ids.push_back(rid);
        for (uint64_t rid : ids) {
          ++counters->expired;
          fail_pending(rid, caf::sec::request_timeout, "no answer within the pending timeout");
        }
        self->delayed_send(self, kSweepInterval, sweep_atom::value);
      },
  };
}

caf::behavior proxy_actor(caf::event_based_actor* self, caf::actor endpoint, uint64_t remote_id) {
  return {
      [=](caf::atom_value tag) { self->delegate(endpoint, out_atom::value, remote_id, caf::make_message(tag)); },
      [=](caf::atom_value tag, const msg::Bytes& b) {
        self->delegate(endpoint, out_atom::value, remote_id, caf::make_message(tag, b));
      },
      [=](caf::atom_value tag, const std::vector<msg::Bytes>& v) {
        self->delegate(endpoint, out_atom::value, remote_id, caf::make_message(tag, v));
      },
  };
}

}  // namespace m1::cluster
