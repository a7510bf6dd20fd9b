// The model: prefill + decode = full forward, packing = segments alone, shared prefixes = the
// unshared sequences, backward = finite differences, and the fast backend = the naive oracle at
// the model level.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "base/rng.h"
#include "model/model.h"

using namespace m1;

namespace {

ModelConfig tiny_config(bool tie = false) {
  ModelConfig c;
  c.vocab_size = 23;
  c.hidden_size = 16;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 6;
  c.intermediate_size = 12;
  c.num_local_experts = 4;
  c.num_experts_per_tok = 2;
  c.attn_type_list = {0, 1, 0};
  c.rotary_dim = 4;
  c.rope_theta = 10000;
  c.rms_norm_eps = 1e-5;
  c.postnorm = true;
  c.layernorm_linear_attention_alpha = c.layernorm_full_attention_alpha = c.layernorm_mlp_alpha = 1.5;
  c.block_size = 4;
  c.router_aux_loss_coef = 0.01;
  c.tie_word_embeddings = tie;
  c.initializer_range = 0.3;
  return c;
}

std::vector<int> rand_tokens(Rng& r, int n, int V) {
  std::vector<int> t(static_cast<size_t>(n));
  for (auto& x : t) x = int(r.below(uint64_t(V)));
  return t;
}

// The largest |a − ref| over two gradient buffers, and the largest |ref| (its scale).
struct GradDiff {
  double max_abs = 0, scale = 0;
};
GradDiff grad_diff(const std::vector<float>& a, const std::vector<float>& ref) {
  GradDiff d;
  for (size_t i = 0; i < a.size(); ++i) {
    d.max_abs = std::max(d.max_abs, double(std::fabs(a[i] - ref[i])));
    d.scale = std::max(d.scale, double(std::fabs(ref[i])));
  }
  return d;
}

struct WsDeleter {
  void operator()(Workspace* w) const { delete_workspace(w); }
};
using WsPtr = std::unique_ptr<Workspace, WsDeleter>;

}  // namespace

TEST_CASE("prefill then decode equals one full forward (batched, ragged prompts)") {
  Model m(tiny_config());
  m.init_random(3);
  Rng r(5);
  const int V = m.config().vocab_size;
  std::vector<std::vector<int>> seqs = {rand_tokens(r, 14, V), rand_tokens(r, 9, V), rand_tokens(r, 11, V)};
  std::vector<int> plen = {5, 1, 8};
  // full forward per sequence
  std::vector<std::vector<float>> full;
  for (auto& s : seqs) {
    Batch b;
    b.add_segment(s);
    WsPtr ws(new_workspace());
    ForwardOut out;
    m.forward(b, *ws, out);
    full.push_back(out.logp);
  }
  std::vector<DecodeState> st(3);
  std::vector<DecodeState*> sp = {&st[0], &st[1], &st[2]};
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < 3; ++i) prompts.emplace_back(seqs[i].begin(), seqs[i].begin() + plen[i]);
  std::vector<float> logsm(static_cast<size_t>(3) * V);
  m.prefill(prompts, sp.data(), logsm.data());
  std::vector<int> cur = plen;  // index of the next token to feed
  double maxdiff = 0;
  for (int i = 0; i < 3; ++i) maxdiff = std::max(maxdiff, std::fabs(double(logsm[size_t(i) * V + seqs[i][cur[i]]]) - full[i][cur[i] - 1]));
  for (int step = 0; step < 8; ++step) {
    std::vector<int> toks;
    std::vector<DecodeState*> active;
    std::vector<int> who;
    for (int i = 0; i < 3; ++i)
      if (cur[i] + 1 < int(seqs[i].size())) {
        toks.push_back(seqs[i][cur[i]]);
        active.push_back(&st[i]);
        who.push_back(i);
      }
    if (toks.empty()) break;
    std::vector<float> out(toks.size() * V);
    m.decode_step(toks.data(), active.data(), int(toks.size()), out.data());
    for (size_t j = 0; j < who.size(); ++j) {
      const int i = who[j];
      cur[i] += 1;
      maxdiff = std::max(maxdiff, std::fabs(double(out[j * V + seqs[i][cur[i]]]) - full[i][cur[i] - 1]));
    }
  }
  CHECK(maxdiff < 1e-5);
  CHECK(st[0].len == 13);
}

TEST_CASE("a packed batch equals its segments run alone") {
  Model m(tiny_config());
  m.init_random(4);
  Rng r(6);
  const int V = m.config().vocab_size;
  std::vector<std::vector<int>> segs = {rand_tokens(r, 7, V), rand_tokens(r, 1, V), rand_tokens(r, 12, V)};
  Batch packed;
  for (auto& s : segs) packed.add_segment(s);
  WsPtr ws(new_workspace());
  ForwardOut po;
  m.forward(packed, *ws, po);
  size_t off = 0;
  double maxdiff = 0;
  for (auto& s : segs) {
    Batch b;
    b.add_segment(s);
    WsPtr w2(new_workspace());
    ForwardOut o;
    m.forward(b, *w2, o);
    for (size_t t = 0; t < s.size(); ++t) {
      maxdiff = std::max(maxdiff, std::fabs(double(o.logp[t]) - po.logp[off + t]));
      maxdiff = std::max(maxdiff, std::fabs(double(o.entropy[t]) - po.entropy[off + t]));
    }
    off += s.size();
  }
  CHECK(maxdiff < 1e-5);
}

TEST_CASE("shared prefixes: continuations equal the unshared sequences (logp, entropy, gradients)") {
  // Two prefixes, continuations crossing lightning block boundaries (block 4), plain segments in
  // between; both backends. The unshared batch has each prefix + continuation as one segment.
  for (const Kernels* kern : {&cpu_naive_kernels(), &cpu_fast_kernels()}) {
    CAPTURE(kern->name);
    Model m(tiny_config());
    m.init_random(21);
    m.set_kernels(*kern);
    Rng r(22);
    const int V = m.config().vocab_size;
    const auto p1 = rand_tokens(r, 7, V), p2 = rand_tokens(r, 3, V), plain = rand_tokens(r, 6, V);
    struct Part { int prefix; std::vector<int> toks; };  // prefix: 1, 2 or 0 (plain)
    const std::vector<Part> parts = {{1, rand_tokens(r, 1, V)}, {0, plain},  {1, rand_tokens(r, 5, V)},
                                     {2, rand_tokens(r, 9, V)}, {1, rand_tokens(r, 9, V)}, {2, rand_tokens(r, 2, V)}};
    Batch shared, flat;
    std::vector<std::pair<int, int>> rows;  // (row in shared, row in flat) of every scored token
    const int s1 = shared.add_prefix(p1);
    const auto between = rand_tokens(r, 2, V);  // a plain segment between a prefix and its users
    shared.add_segment(between);
    flat.add_segment(between);
    const int s2 = shared.add_prefix(p2);
    for (const Part& pt : parts) {
      const auto& pre = pt.prefix == 1 ? p1 : p2;
      const int a = shared.size();
      if (pt.prefix) shared.add_continuation(pt.prefix == 1 ? s1 : s2, pt.toks);
      else shared.add_segment(pt.toks);
      std::vector<int> full = pt.prefix ? pre : std::vector<int>{};
      full.insert(full.end(), pt.toks.begin(), pt.toks.end());
      const int f = flat.size() + int(full.size() - pt.toks.size());
      flat.add_segment(full);
      for (int j = 0; j < int(pt.toks.size()); ++j) rows.emplace_back(a + j, f + j);
    }
    CHECK(shared.size() < flat.size() + 7);
    std::vector<float> cs(size_t(shared.size()), 0.f), cf(size_t(flat.size()), 0.f);
    for (auto [a, f] : rows) cs[size_t(a)] = cf[size_t(f)] = float(r.normal());
    WsPtr ws(new_workspace()), wf(new_workspace());
    ForwardOut os, of;
    m.forward(shared, *ws, os);
    m.forward(flat, *wf, of);
    double dl = 0, de = 0;
    for (auto [a, f] : rows) {
      dl = std::max(dl, std::fabs(double(os.logp[size_t(a)]) - of.logp[size_t(f)]));
      de = std::max(de, std::fabs(double(os.entropy[size_t(a)]) - of.entropy[size_t(f)]));
    }
    CHECK(dl < 1e-5);
    CHECK(de < 1e-5);
    CHECK(os.aux_loss == doctest::Approx(of.aux_loss).epsilon(1e-5));  // a prefix counts per continuation
    std::vector<float> gs(m.num_params(), 0.f), gf(m.num_params(), 0.f);
    m.backward(shared, *ws, cs.data(), 1.0f, gs.data());
    m.backward(flat, *wf, cf.data(), 1.0f, gf.data());
    const GradDiff g = grad_diff(gs, gf);
    CHECK(g.scale > 1e-3);
    CHECK(g.max_abs / g.scale < 1e-5);
    // And the check is not vacuous: dropping one prefix token changes the continuations.
    Batch off;
    const int q = off.add_prefix(std::vector<int>(p1.begin() + 1, p1.end()));
    off.add_continuation(q, parts[4].toks);
    WsPtr wo(new_workspace());
    ForwardOut oo;
    m.forward(off, *wo, oo);
    size_t base = 0;  // parts[4]'s first entry in rows
    for (int i = 0; i < 4; ++i) base += parts[size_t(i)].toks.size();
    double moved = 0;
    for (size_t j = 0; j + 1 < parts[4].toks.size(); ++j)
      moved = std::max(moved, std::fabs(double(oo.logp[6 + j]) - os.logp[size_t(rows[base + j].first)]));
    CHECK(moved > 1e-4);
  }
}

TEST_CASE("model backward matches central finite differences") {
  for (bool tie : {false, true}) {
    CAPTURE(tie);
    Model m(tiny_config(tie));
    m.init_random(33);
    Rng r(8);
    const int V = m.config().vocab_size;
    Batch b;
    b.add_segment(rand_tokens(r, 9, V));
    b.add_segment(rand_tokens(r, 6, V));
    std::vector<float> c(static_cast<size_t>(b.size()));
    for (auto& x : c) x = float(r.normal());
    auto loss = [&]() {
      WsPtr ws(new_workspace());
      ForwardOut o;
      m.forward(b, *ws, o);
      double L = o.aux_loss;
      for (int t = 0; t < b.size(); ++t) L += double(c[t]) * o.logp[t];
      return L;
    };
    std::vector<float> g(m.num_params(), 0.f);
    {
      WsPtr ws(new_workspace());
      ForwardOut o;
      m.forward(b, *ws, o);
      m.backward(b, *ws, c.data(), 1.0f, g.data());
    }
    // Central differences at h and h/2. Top-k routing is piecewise constant, so a perturbation
    // can flip an expert choice (a kink): those points disagree between the two step sizes and
    // are skipped (counted, and bounded below).
    auto fd_at = [&](float* p, float h) {
      const float old = *p;
      *p = old + h;
      const double lp = loss();
      *p = old - h;
      const double lm = loss();
      *p = old;
      return (lp - lm) / (2.0 * double(h));
    };
    int checked = 0, bad = 0, kinks = 0;
    for (auto& s : m.specs()) {
      for (int j = 0; j < 3; ++j) {
        const size_t i = s.offset + r.below(s.numel);
        float* p = m.params() + i;
        const double fd = fd_at(p, 2e-3f), fd2 = fd_at(p, 1e-3f);
        if (std::fabs(fd - fd2) > 5e-3 + 5e-2 * std::fabs(fd2)) {
          ++kinks;
          continue;
        }
        const double err = std::fabs(fd - g[i]);
        ++checked;
        if (err > 3e-3 + 3e-2 * std::fabs(fd)) {
          ++bad;
          MESSAGE(s.name << "[" << i - s.offset << "]: fd " << fd << " analytic " << g[i]);
        }
      }
    }
    MESSAGE("checked " << checked << ", skipped at routing kinks " << kinks);
    CHECK(kinks * 5 < checked);
    CHECK(checked > 50);
    CHECK(bad == 0);
  }
}

TEST_CASE("the fast backend equals the naive oracle at the model level (forward and gradients)") {
  Model a(tiny_config());
  a.init_random(9);
  Model n = a;
  n.set_kernels(cpu_naive_kernels());
  a.set_kernels(cpu_fast_kernels());
  Rng r(10);
  Batch b;
  b.add_segment(rand_tokens(r, 11, a.config().vocab_size));
  b.add_segment(rand_tokens(r, 5, a.config().vocab_size));
  std::vector<float> c(static_cast<size_t>(b.size()), -0.1f);
  std::vector<float> ga(a.num_params(), 0.f), gn(a.num_params(), 0.f);
  WsPtr wa(new_workspace()), wn(new_workspace());
  ForwardOut oa, on;
  a.forward(b, *wa, oa);
  n.forward(b, *wn, on);
  for (int t = 0; t < b.size(); ++t) CHECK(oa.logp[t] == doctest::Approx(on.logp[t]).epsilon(1e-5));
  CHECK(oa.aux_loss == doctest::Approx(on.aux_loss).epsilon(1e-5));
  a.backward(b, *wa, c.data(), 1.0f, ga.data());
  n.backward(b, *wn, c.data(), 1.0f, gn.data());
  const GradDiff g = grad_diff(ga, gn);
  CHECK(g.max_abs / (1e-3 + g.scale) < 1e-4);
}

TEST_CASE("lightning decode state is constant in context length; KV cache grows per token") {
  Model m(tiny_config());
  m.init_random(11);
  Rng r(12);
  std::vector<std::vector<int>> p = {rand_tokens(r, 10, m.config().vocab_size)};
  DecodeState s;
  DecodeState* sp = &s;
  std::vector<float> lsm(static_cast<size_t>(m.config().vocab_size));
  m.prefill(p, &sp, lsm.data());
  const size_t l0 = s.lstate[0].size(), k0 = s.kcache[1].size();
  int tok = 1;
  m.decode_step(&tok, &sp, 1, lsm.data());
  CHECK(s.lstate[0].size() == l0);
  CHECK(l0 == size_t(4 * 6 * 6));
  CHECK(s.kcache[1].size() == k0 + size_t(2 * 6));
}
