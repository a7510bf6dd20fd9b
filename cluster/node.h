// The CAF side of a node on a Transport: an endpoint actor that turns local messages for remote
// actors into frames and incoming frames into local messages, and proxy actors that make a remote
// actor look local (cluster/transport.h).
//
// A local actor talks to a remote one through its proxy exactly as to a local actor: send or
// request (atom), (atom, Bytes) or (atom, vector<Bytes>). The proxy delegates the message to its
// node's endpoint, so a request keeps its CAF response promise; the endpoint gives it a request id,
// sends a Request frame and fulfils the promise with the Response frame's payload, or fails it with
// the Failure frame's reason, when the destination node is declared down (every pending promise
// towards it), or after kPendingTimeout. Incoming frames are decoded (the codec verifies them),
// checked by a FrameFilter (duplicates and frames of superseded incarnations are dropped and
// counted) and delivered to the destination actor registered on this node; a Request is answered
// with the local actor's reply (a Response) or its error (a Failure).
#pragma once

#include <caf/all.hpp>

#include <chrono>
#include <cstdint>
#include <memory>

#include "cluster/frame.h"
#include "cluster/transport.h"
#include "messages/caf_inspect.h"

namespace m1::cluster {

using out_atom = caf::atom_constant<caf::atom("out")>;             // proxy → endpoint: (remote id, message)
using frame_atom = caf::atom_constant<caf::atom("frame")>;         // transport → endpoint: (Bytes frame)
using register_atom = caf::atom_constant<caf::atom("register")>;   // (actor id, local actor): reachable by id
using route_atom = caf::atom_constant<caf::atom("route")>;         // (actor id, node): where a remote actor lives
using node_down_atom = caf::atom_constant<caf::atom("nodedown")>;  // (node): fail every request pending on it
using sweep_atom = caf::atom_constant<caf::atom("sweep")>;         // endpoint: expire pending requests

// How long a forwarded request may wait for its answer on either side. Requesters bound their own
// waits (shorter); this only keeps the pending tables finite when answers are lost.
constexpr auto kPendingTimeout = std::chrono::minutes(30);
constexpr auto kSweepInterval = std::chrono::seconds(30);

// What an endpoint saw, for tests, the simulation's invariants and metrics. Owned by the node's
// process; written only by its endpoint actor.
struct NodeCounters {
  uint64_t frames_out = 0, frames_in = 0;
  uint64_t malformed = 0;         // failed decode<Frame>, or a payload shape the tag cannot take
  uint64_t duplicates = 0;        // dropped by the FrameFilter
  uint64_t stale = 0;             // from a superseded incarnation
  uint64_t no_route = 0;          // a message for a remote actor with no known node
  uint64_t no_actor = 0;          // a frame for an actor not registered here
  uint64_t orphan_responses = 0;  // a Response/Failure with no pending request (late, or duplicate)
  uint64_t expired = 0;           // pending requests failed by kPendingTimeout
  uint64_t failed_by_node_down = 0;
};

struct EndpointArgs {
  Transport* transport = nullptr;  // outlives the endpoint
  NodeId node = 0;
  uint64_t incarnation = 1;        // of this node: a restart must use a larger one
  std::shared_ptr<NodeCounters> counters;
};
caf::behavior endpoint_actor(caf::event_based_actor* self, EndpointArgs a);

// A local stand-in for the actor REMOTE_ID reachable through ENDPOINT.
caf::behavior proxy_actor(caf::event_based_actor* self, caf::actor endpoint, uint64_t remote_id);

}  // namespace m1::cluster
