// Frames: the transport's envelope around one actor message between nodes (messages/frame.fbs),
// and FrameFilter, the receiving side's guard against duplicates and superseded incarnations.
// Pure: no I/O, no clock. Thread safety: FrameFilter is not thread-safe (one per receiving node).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "messages/codec.h"

namespace m1::cluster {

using NodeId = uint64_t;

// Everything of a frame but its payloads.
struct FrameHeader {
  uint64_t source = 0;       // sending actor id
  uint64_t destination = 0;  // receiving actor id
  NodeId source_node = 0;
  uint64_t incarnation = 0;  // of the sending node
  uint64_t seq = 0;          // per (source_node, incarnation), from 1
  uint64_t request_id = 0;   // 0 for Oneway
  msg::FrameKind kind = msg::FrameKind::Oneway;
  std::string tag;           // the receiver's message name (a CAF atom's text)
};

// Encodes a frame; the result passes decode<Frame> (else the codec's error naming the field).
Result<msg::Bytes> encode_frame(const FrameHeader& h, msg::PayloadShape shape, const std::vector<msg::Bytes>& payloads,
                                std::string_view reason = {});
// The header of a decoded frame.
FrameHeader header_of(const msg::Frame& f);
// The payloads of a decoded frame, copied into their own (aligned) buffers.
std::vector<msg::Bytes> payloads_of(const msg::Frame& f);

// Admits each frame once per (source node, incarnation, seq) and refuses frames from an
// incarnation older than the newest seen from that node (a restarted node supersedes its past:
// frames its previous incarnation sent that are still in flight are dropped). Keeps, per node, the
// newest incarnation and the seqs seen in a window of kWindow below the highest; a seq older than
// the window counts as a duplicate (a sender never has that many frames in flight).
class FrameFilter {
 public:
  enum class Verdict { kAccept, kDuplicate, kStaleIncarnation };
  static constexpr uint64_t kWindow = 1 << 16;

  Verdict admit(NodeId source_node, uint64_t incarnation, uint64_t seq);
  // The newest incarnation seen from NODE (0 = none).
  uint64_t incarnation_of(NodeId node) const;

 private:
  struct Peer {
    uint64_t incarnation = 0;
    uint64_t highest = 0;     // highest seq admitted in this incarnation
    std::set<uint64_t> seen;  // admitted seqs in (highest - kWindow, highest]
  };
  std::map<NodeId, Peer> peers_;
};

const char* verdict_name(FrameFilter::Verdict v);

}  // namespace m1::cluster
