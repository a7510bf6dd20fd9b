// LoopbackTransport: the in-process Transport of the deterministic simulation (sim/) and the
// cluster tests. Frames wait in one queue ordered by (delivery time, send order) on a clock the
// caller owns (NOW_US); deliver_due() hands every frame that is due to its node's receiver. Faults
// are drawn from one seeded generator, so the same seed and the same calls give the same
// deliveries, byte for byte:
//   drop        each frame is lost with probability drop;
//   duplicate   ... delivered twice (the copy with its own delay) with probability duplicate;
//   delay       each frame waits uniform [min_delay_us, max_delay_us]: different delays reorder;
//   partition   frames between two cut nodes (either way) are lost until heal();
//   crash       detach(node): frames to it are lost, and purge(node) drops those in flight.
// Thread safety: none; one thread drives it (the simulation's).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "cluster/transport.h"

namespace m1::cluster {

struct LinkFaults {
  double drop = 0;       // probability a frame is lost, [0, 1]
  double duplicate = 0;  // probability a frame is delivered twice, [0, 1]
  int64_t min_delay_us = 0, max_delay_us = 0;
};

// Deterministic 64-bit generator (SplitMix64): the same sequence on every platform, unlike the
// standard distributions.
class SimRng {
 public:
  explicit SimRng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  bool chance(double p) { return p > 0 && uniform() < p; }
  int64_t between(int64_t lo, int64_t hi) { return hi <= lo ? lo : lo + int64_t(next() % uint64_t(hi - lo + 1)); }

 private:
  uint64_t s_;
};

class LoopbackTransport final : public Transport {
 public:
  struct Stats {
    uint64_t sent = 0, delivered = 0, dropped = 0, duplicated = 0, partitioned = 0, undeliverable = 0, purged = 0;
  };

  LoopbackTransport(uint64_t seed, std::function<int64_t()> now_us) : rng_(seed), now_(std::move(now_us)) {}

  Status attach(NodeId node, Receiver r) override;
  void detach(NodeId node) override;
  void send(NodeId from, NodeId to, msg::Bytes frame) override;

  void set_faults(const LinkFaults& f) { faults_ = f; }
  const LinkFaults& faults() const { return faults_; }
  // Cuts the link between A and B both ways, until heal().
  void partition(NodeId a, NodeId b);
  void heal() { cuts_.clear(); }
  bool partitioned(NodeId a, NodeId b) const;
  // Drops every frame in flight from or to NODE (its process died: what it sent is gone too).
  void purge(NodeId node);
  bool attached(NodeId node) const { return receivers_.count(node) != 0; }
  // Multiplies the delay of every frame from or to NODE by FACTOR (≥ 1): a slow process or link.
  void set_slow(NodeId node, int64_t factor) { slow_[node] = factor; }

  // Delivers every frame due at now_us(), in (time, send order) order, including frames sent by
  // receivers meanwhile that are already due. Returns how many were delivered.
  size_t deliver_due();
  // The delivery time of the next frame in flight, if any.
  std::optional<int64_t> next_due() const;
  size_t in_flight() const { return queue_.size(); }
  const Stats& stats() const { return stats_; }

 private:
  struct Pending {
    NodeId from, to;
    msg::Bytes frame;
  };
  void enqueue(NodeId from, NodeId to, const msg::Bytes& frame);

  SimRng rng_;
  std::function<int64_t()> now_;
  LinkFaults faults_;
  std::map<NodeId, Receiver> receivers_;
  std::map<NodeId, int64_t> slow_;
  std::set<std::pair<NodeId, NodeId>> cuts_;                 // (min, max)
  std::map<std::pair<int64_t, uint64_t>, Pending> queue_;  // (due, order) → frame
  uint64_t order_ = 0;
  Stats stats_;
};

}  // namespace m1::cluster
