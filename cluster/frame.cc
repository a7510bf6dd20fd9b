#include "cluster/frame.h"

namespace m1::cluster {

Result<msg::Bytes> encode_frame(const FrameHeader& h, msg::PayloadShape shape, const std::vector<msg::Bytes>& payloads,
                                std::string_view reason) {
  flatbuffers::FlatBufferBuilder b(1024 + (payloads.empty() ? 0 : payloads.size() * payloads[0].size()));
  std::vector<flatbuffers::Offset<msg::Payload>> ps;
  ps.reserve(payloads.size());
  for (const msg::Bytes& p : payloads) {
    auto bytes = b.CreateVector(p.data(), p.size());  // payloads_of copies it out before it is decoded
    ps.push_back(msg::CreatePayload(b, bytes));
  }
  auto pv = shape == msg::PayloadShape::Empty ? flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<msg::Payload>>>()
                                              : b.CreateVector(ps);
  auto tag = b.CreateString(h.tag);
  auto why = reason.empty() ? flatbuffers::Offset<flatbuffers::String>() : b.CreateString(reason.data(), reason.size());
  auto root = msg::CreateFrame(b, h.source, h.destination, h.source_node, h.incarnation, h.seq, h.request_id, h.kind,
                               tag, shape, pv, why);
  return msg::finish_checked(b, root);
}

FrameHeader header_of(const msg::Frame& f) {
  FrameHeader h;
  h.source = f.source();
  h.destination = f.destination();
  h.source_node = f.source_node();
  h.incarnation = f.incarnation();
  h.seq = f.seq();
  h.request_id = f.request_id();
  h.kind = f.kind();
  h.tag = f.tag() ? f.tag()->str() : std::string();
  return h;
}

std::vector<msg::Bytes> payloads_of(const msg::Frame& f) {
  std::vector<msg::Bytes> out;
  if (const auto* ps = f.payloads()) {
    out.reserve(ps->size());
    for (const msg::Payload* p : *ps) out.emplace_back(std::vector<uint8_t>(p->bytes()->begin(), p->bytes()->end()));
  }
  return out;
}

FrameFilter::Verdict FrameFilter::admit(NodeId source_node, uint64_t incarnation, uint64_t seq) {
  Peer& p = peers_[source_node];
  if (incarnation < p.incarnation) return Verdict::kStaleIncarnation;
  if (incarnation > p.incarnation) p = Peer{incarnation, 0, {}};
  if (p.highest >= kWindow && seq <= p.highest - kWindow) return Verdict::kDuplicate;
  if (!p.seen.insert(seq).second) return Verdict::kDuplicate;
  if (seq > p.highest) {
    p.highest = seq;
    if (p.highest >= kWindow) p.seen.erase(p.seen.begin(), p.seen.upper_bound(p.highest - kWindow));
  }
  return Verdict::kAccept;
}

uint64_t FrameFilter::incarnation_of(NodeId node) const {
  auto it = peers_.find(node);
  return it == peers_.end() ? 0 : it->second.incarnation;
}

const char* verdict_name(FrameFilter::Verdict v) {
  switch (v) {
    case FrameFilter::Verdict::kAccept: return "accept";
    case FrameFilter::Verdict::kDuplicate: return "duplicate";
    case FrameFilter::Verdict::kStaleIncarnation: return "stale incarnation";
  }
  return "?";
}

}  // namespace m1::cluster
