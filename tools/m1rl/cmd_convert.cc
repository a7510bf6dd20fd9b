// m1rl model convert: a model directory between the release layout and transformers' MiniMax
// layout (model/hf_convert.h).
#include <cstdio>

#include "model/hf_convert.h"
#include "tools/m1rl/commands.h"

namespace m1::cli {

int model_convert(const std::string& in, const std::string& out, const std::string& to, const std::string& dtype,
                  bool force, uint64_t max_shard_bytes) {
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "m1rl: error: %s\n", msg.c_str());
    return 1;
  };
  ConvertOptions o;
  if (to == "hf") {
    o.to = CheckpointLayout::kHf;
  } else if (to == "release") {
    o.to = CheckpointLayout::kRelease;
  } else {
    return fail("--to '" + to + "': expected hf (transformers' MiniMax) or release (the MiniMax-M1 release's)");
  }
  if (dtype == "bf16") {
    o.dtype = "BF16";
  } else if (dtype == "f32") {
    o.dtype = "F32";
  } else if (!dtype.empty()) {
    return fail("--dtype '" + dtype + "': expected bf16 or f32 (default: the input's)");
  }
  o.force = force;
  o.max_shard_bytes = max_shard_bytes;
  auto r = convert_checkpoint(in, out, o);
  if (!r.is_ok()) return fail(r.status().message());
  for (const std::string& c : r->changes)
    std::fprintf(stderr, "m1rl: warning: converted with --force although the function changes: %s\n", c.c_str());
  for (const std::string& t : r->dropped)
    std::fprintf(stderr, "m1rl: warning: %s: tensor '%s' is not part of the model; not converted\n", in.c_str(),
                 t.c_str());
  std::string copied;
  for (const std::string& f : r->copied) copied += (copied.empty() ? "" : ", ") + f;
  std::printf("converted %s (%s) to %s (%s): %zu tensors, %s, %d shard%s, %.3g GB%s%s\n", in.c_str(),
              layout_name(r->from), out.c_str(), layout_name(r->to), r->tensors, r->dtype.c_str(), r->shards,
              r->shards == 1 ? "" : "s", double(r->bytes) / 1e9, copied.empty() ? "" : "; copied ",
              copied.c_str());
  return 0;
}

}  // namespace m1::cli
