// The transport seam: moves encoded frames (messages/frame.fbs, cluster/frame.h) between nodes.
// A node is one process of the cluster (or one simulated process: LoopbackTransport). The
// transport promises nothing about delivery — a frame may be lost, delayed, duplicated or
// reordered, and a node may crash — so everything above it (cluster/node.h) dedupes by
// (source node, incarnation, seq), fences superseded incarnations, and bounds every wait.
// Implementations: LoopbackTransport (cluster/loopback_transport.h), in-process and
// deterministic, with injectable faults; the UCX transport between processes is the cluster's.
#pragma once

#include <functional>

#include "base/status.h"
#include "cluster/frame.h"
#include "messages/codec.h"

namespace m1::cluster {

class Transport {
 public:
  // Called with each frame delivered to a node, on the transport's delivery context (for
  // LoopbackTransport: inside deliver_due()). The bytes are not yet verified.
  using Receiver = std::function<void(const msg::Bytes& frame)>;

  virtual ~Transport() = default;
  // Starts delivering frames addressed to NODE to R. Error: NODE is already attached.
  virtual Status attach(NodeId node, Receiver r) = 0;
  // Stops delivering to NODE (a crash or a shutdown): frames to it are lost until it attaches again.
  virtual void detach(NodeId node) = 0;
  // Hands FRAME from node FROM to node TO. Never delivers before returning; may lose it.
  virtual void send(NodeId from, NodeId to, msg::Bytes frame) = 0;
};

}  // namespace m1::cluster
