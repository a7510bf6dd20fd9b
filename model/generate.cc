#include "model/generate.h"

#include <algorithm>

#include "base/rng.h"

namespace m1 {

std::vector<GenResult> generate(const Model& m, const std::vector<GenRequest>& reqs, int eos_id, int max_batch) {
  const int V = m.config().vocab_size;
  std::vector<GenResult> res(reqs.size());
  for (size_t b0 = 0; b0 < reqs.size(); b0 += size_t(max_batch)) {
    const size_t b1 = std::min(reqs.size(), b0 + size_t(max_batch));
    const int B = int(b1 - b0);
    std::vector<DecodeState> st(static_cast<size_t>(B));
    std::vector<DecodeState*> sp;
    std::vector<std::vector<int>> prompts;
    std::vector<Rng> rngs;
    for (int i = 0; i < B; ++i) {
      sp.push_back(&st[i]);
      prompts.push_back(reqs[b0 + i].prompt);
      rngs.emplace_back(reqs[b0 + i].seed);
    }
    std::vector<float> logsm(static_cast<size_t>(B) * V);
    m.prefill(prompts, sp.data(), logsm.data());
    std::vector<int> live(static_cast<size_t>(B));
    for (int i = 0; i < B; ++i) live[i] = i;
    std::vector<const float*> rows(static_cast<size_t>(B));
    for (int i = 0; i < B; ++i) rows[i] = logsm.data() + size_t(i) * V;
    std::vector<float> next(static_cast<size_t>(B) * V);
    while (!live.empty()) {
      std::vector<int> toks, still;
      std::vector<DecodeState*> act;
      for (size_t j = 0; j < live.size(); ++j) {
        const int i = live[j];
        const GenRequest& rq = reqs[b0 + i];
        GenResult& out = res[b0 + i];
        SampledToken t = sample_token(rows[j], V, rq.sampling, rngs[i]);
        out.tokens.push_back(t.id);
        out.logprobs.push_back(t.logprob);
        if (t.id == eos_id) {
          out.finish = "eos";
        } else if (int(out.tokens.size()) >= rq.max_new) {
          out.finish = "length";
        } else {
          still.push_back(i);
          toks.push_back(t.id);
          act.push_back(&st[i]);
        }
      }
      live = still;
      if (live.empty()) break;
      m.decode_step(toks.data(), act.data(), int(live.size()), next.data());
      logsm.swap(next);
      next.resize(logsm.size());
      for (size_t j = 0; j < live.size(); ++j) rows[j] = logsm.data() + j * V;
    }
  }
  return res;
}

}  // namespace m1
