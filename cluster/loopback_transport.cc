#include "cluster/loopback_transport.h"

#include <algorithm>

namespace m1::cluster {

Status LoopbackTransport::attach(NodeId node, Receiver r) {
  if (receivers_.count(node)) return Status::errorf("loopback transport: node {} is already attached", node);
  receivers_.emplace(node, std::move(r));
  return Status::ok();
}

void LoopbackTransport::detach(NodeId node) { receivers_.erase(node); }

void LoopbackTransport::partition(NodeId a, NodeId b) { cuts_.insert({std::min(a, b), std::max(a, b)}); }

bool LoopbackTransport::partitioned(NodeId a, NodeId b) const {
  return cuts_.count({std::min(a, b), std::max(a, b)}) != 0;
}

void LoopbackTransport::enqueue(NodeId from, NodeId to, const msg::Bytes& frame) {
  int64_t delay = rng_.between(faults_.min_delay_us, faults_.max_delay_us);
  for (NodeId n : {from, to}) {
    auto it = slow_.find(n);
    if (it != slow_.end()) delay *= std::max<int64_t>(1, it->second);
  }
  const int64_t due = now_() + delay;
  queue_.emplace(std::make_pair(due, ++order_), Pending{from, to, frame});
}

void LoopbackTransport::send(NodeId from, NodeId to, msg::Bytes frame) {
  ++stats_.sent;
  // The draws happen for every frame, in the same order, whatever is decided: one fault's setting
  // does not shift the random sequence of the others.
  const bool drop = rng_.chance(faults_.drop);
  const bool dup = rng_.chance(faults_.duplicate);
  if (drop) {
    ++stats_.dropped;
    return;
  }
  if (partitioned(from, to)) {
    ++stats_.partitioned;
    return;
  }
  enqueue(from, to, frame);
  if (dup) {
    ++stats_.duplicated;
    enqueue(from, to, frame);
  }
}

void LoopbackTransport::purge(NodeId node) {
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->second.from == node || it->second.to == node) {
      it = queue_.erase(it);
      ++stats_.purged;
    } else {
      ++it;
    }
  }
}

size_t LoopbackTransport::deliver_due() {
  size_t n = 0;
  const int64_t now = now_();
  while (!queue_.empty() && queue_.begin()->first.first <= now) {
    Pending p = std::move(queue_.begin()->second);
    queue_.erase(queue_.begin());
    if (partitioned(p.from, p.to)) {  // cut while in flight: lost
      ++stats_.partitioned;
      continue;
    }
    auto r = receivers_.find(p.to);
    if (r == receivers_.end()) {
      ++stats_.undeliverable;
      continue;
    }
    ++stats_.delivered;
    ++n;
    Receiver rcv = r->second;  // the receiver may detach its node while it runs
    rcv(p.frame);
  }
  return n;
}

std::optional<int64_t> LoopbackTransport::next_due() const {
  if (queue_.empty()) return std::nullopt;
  return queue_.begin()->first.first;
}

}  // namespace m1::cluster
