// Forward over packed batches, backward to every parameter, prefill and batched decode.
// Activations are assigned, parameter gradients accumulate (+=). Shapes are in the comments;
// letters as in docs/model.md. Every op goes through the Kernels table (kernels/kernels.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/check.h"
#include "base/parallel.h"
#include "model/model.h"

namespace m1 {

using Vec = std::vector<float>;
using IVec = std::vector<int>;

template <class V>
static auto* sized(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

struct MoeActs {
  Vec logits, probs, top_w, xg, a1, a3, act, y;  // (T,E) (T,E) (T,k) (T·k,D) (T·k,I)×3 (T·k,D)
  IVec top_idx, offsets, perm, rows;             // (T,k) (E+1) (T·k) (T·k)
  // With shared prefixes the load-balancing loss sees the batch unshared (a prefix's routing once
  // per continuation, as if each sequence were computed whole): probs and top-k of those rows.
  Vec xprobs;                                    // (expand.size(), E)
  IVec xtop;                                     // (expand.size(), k)
  float aux = 0;
};

struct LayerActs {
  Vec x, n1, rstd1;                            // (T,D) (T,D) (T)
  Vec qkv_pre, qkv, core, y, rstd_y, g_pre;    // lightning: (T,3Hd) (T,3Hd) (T,Hd) (T,Hd) (T) (T,Hd)
  Vec gated;                                   // softmax reuses core = attention output (T,Hd)
  Vec q, kk, vv, lse;                          // softmax: (T,Hd) (T,Hkv·d) (T,Hkv·d) (H·T)
  Vec pstate;                                  // lightning: final state of each prefix (slots, H,d,d)
  Vec a, h1, n2, rstd2;                        // (T,D) ×3, (T)
  MoeActs moe;
};

struct Workspace {
  std::vector<LayerActs> layers;
  Vec h, hL, nf, rstdf, logsm, mo;  // (T,D) (T,D) (T,D) (T) (T,V) (T,D)
  IVec pos;                         // (T) RoPE position within the sequence (prefix included)
  IVec slot;                        // per segment: its index among the batch's prefixes, or −1
  int prefixes = 0;                 // segments that some segment continues
  IVec expand;                      // with prefixes: the rows of the equivalent unshared batch
  // scratch: prefix + continuation sequences of softmax layers, state gradients of prefixes
  Vec cq, ck, cv, co, clse, cdo, cdq, cdk, cdv, dstate, scaled;
  // backward scratch
  Vec dh, dn, dh1, dtmp, dA, dB, dC, dD, dprobs, dlogits, dtop_w, dxg;
};

Workspace* new_workspace() { return new Workspace(); }
void delete_workspace(Workspace* ws) { delete ws; }

namespace {

struct Dims {
  int D, H, Hkv, d, I, E, k, V, L;
  explicit Dims(const ModelConfig& c)
      : D(c.hidden_size), H(c.num_attention_heads), Hkv(c.num_key_value_heads), d(c.head_dim),
        I(c.intermediate_size), E(c.num_local_experts), k(c.num_experts_per_tok), V(c.vocab_size),
        L(c.num_hidden_layers) {}
};

// y (T,out) = x (T,in) · Wᵀ, W (out,in).
inline void linear(const Kernels& K, float* y, const float* x, const float* W, int T, int in, int out) {
  K.gemm(false, true, T, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
}
// Backward of linear: dx (T,in) (= or += by beta) = dy·W; dW += dyᵀ·x.
inline void linear_backward(const Kernels& K, float* dx, float beta, float* dW, const float* dy, const float* x,
                            const float* W, int T, int in, int out) {
  if (dx) K.gemm(false, false, T, in, out, 1.0f, dy, out, W, in, beta, dx, in);
  K.gemm(true, false, out, in, T, 1.0f, dy, out, x, in, 1.0f, dW, in);
}

// out (T,D) = MoE(x); keeps routing and expert activations in a.
void moe_forward(const Kernels& K, const Dims& m, const LayerView& w, float coef, const float* x, int T, MoeActs& a,
                 float* out, const IVec& expand) {
  const int E = m.E, k = m.k, D = m.D, I = m.I, Tk = T * k;
  float* logits = sized(a.logits, size_t(T) * E);
  linear(K, logits, x, w.router, T, D, E);
  K.router_forward(sized(a.probs, size_t(T) * E), sized(a.top_idx, size_t(Tk)), sized(a.top_w, size_t(Tk)), logits,
                   T, E, k);
  K.moe_dispatch(sized(a.offsets, size_t(E) + 1), sized(a.perm, size_t(Tk)), a.top_idx.data(), T, E, k);
  int* rows = sized(a.rows, size_t(Tk));
  for (int i = 0; i < Tk; ++i) rows[i] = a.perm[i] / k;
  K.gather_rows(sized(a.xg, size_t(Tk) * D), x, rows, Tk, D);
  sized(a.a1, size_t(Tk) * I);
  sized(a.a3, size_t(Tk) * I);
  sized(a.act, size_t(Tk) * I);
  sized(a.y, size_t(Tk) * D);
  for (int e = 0; e < E; ++e) {
    const int o = a.offsets[e], n = a.offsets[e + 1] - o;
    if (n == 0) continue;
    const float* xe = a.xg.data() + size_t(o) * D;
    linear(K, a.a1.data() + size_t(o) * I, xe, w.w1[e], n, D, I);
    linear(K, a.a3.data() + size_t(o) * I, xe, w.w3[e], n, D, I);
    K.swiglu_forward(a.act.data() + size_t(o) * I, a.a1.data() + size_t(o) * I, a.a3.data() + size_t(o) * I,
                     size_t(n) * I);
    linear(K, a.y.data() + size_t(o) * D, a.act.data() + size_t(o) * I, w.w2[e], n, I, D);
  }
  K.moe_combine(out, a.y.data(), a.perm.data(), a.top_w.data(), T, k, D);
  if (expand.empty()) {
    a.aux = K.moe_aux_loss(nullptr, a.probs.data(), a.top_idx.data(), T, E, k, coef, 0.0f);
    return;
  }
  const int n = int(expand.size());
  K.gather_rows(sized(a.xprobs, size_t(n) * E), a.probs.data(), expand.data(), n, E);
  int* xtop = sized(a.xtop, size_t(n) * k);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < k; ++j) xtop[size_t(i) * k + j] = a.top_idx[size_t(expand[size_t(i)]) * k + j];
  a.aux = K.moe_aux_loss(nullptr, a.xprobs.data(), xtop, n, E, k, coef, 0.0f);
}

// dx (T,D) += ∂/∂x of MoE given dout; parameter grads into g. aux_scale = weight of this
// layer's aux loss in the total loss.
void moe_backward(const Kernels& K, const Dims& m, const LayerView& w, const LayerView& g, float coef,
                  float aux_scale, const float* x, int T, MoeActs& a, const float* dout, float* dx, Workspace& ws) {
  const IVec& expand = ws.expand;
  const int E = m.E, k = m.k, D = m.D, I = m.I, Tk = T * k;
  float* dy = sized(ws.dA, size_t(Tk) * D);
  float* dtop_w = sized(ws.dtop_w, size_t(Tk));
  K.moe_combine_backward(dy, dtop_w, dout, a.y.data(), a.perm.data(), a.top_w.data(), T, k, D);
  float* dact = sized(ws.dB, size_t(Tk) * I);
  float* da1 = sized(ws.dC, size_t(Tk) * I);
  float* da3 = sized(ws.dD, size_t(Tk) * I);
  float* dxg = sized(ws.dxg, size_t(Tk) * D);
  for (int e = 0; e < E; ++e) {
    const int o = a.offsets[e], n = a.offsets[e + 1] - o;
    if (n == 0) continue;
    const size_t oI = size_t(o) * I, oD = size_t(o) * D;
    linear_backward(K, dact + oI, 0.0f, g.w2[e], dy + oD, a.act.data() + oI, w.w2[e], n, I, D);
    K.swiglu_backward(da1 + oI, da3 + oI, dact + oI, a.a1.data() + oI, a.a3.data() + oI, size_t(n) * I);
    linear_backward(K, dxg + oD, 0.0f, g.w1[e], da1 + oI, a.xg.data() + oD, w.w1[e], n, D, I);
    linear_backward(K, dxg + oD, 1.0f, g.w3[e], da3 + oI, a.xg.data() + oD, w.w3[e], n, D, I);
  }
  // scatter-add back to tokens; split by columns so no two threads write one element
  parallel_for(size_t(D), [&](size_t c0, size_t c1) {
    for (int i = 0; i < Tk; ++i) {
      float* dr = dx + size_t(a.rows[i]) * D;
      const float* s = dxg + size_t(i) * D;
      for (size_t c = c0; c < c1; ++c) dr[c] += s[c];
    }
  }, 32);
  float* dprobs = sized(ws.dprobs, size_t(T) * E);
  if (expand.empty()) {
    K.moe_aux_loss(dprobs, a.probs.data(), a.top_idx.data(), T, E, k, coef, aux_scale);
  } else {  // on the forward's unshared rows, then summed back per token
    const int n = int(expand.size());
    float* dx_probs = sized(ws.dlogits, size_t(n) * E);
    K.moe_aux_loss(dx_probs, a.xprobs.data(), a.xtop.data(), n, E, k, coef, aux_scale);
    std::fill(dprobs, dprobs + size_t(T) * E, 0.0f);
    for (int i = 0; i < n; ++i)
      for (int e = 0; e < E; ++e) dprobs[size_t(expand[size_t(i)]) * E + e] += dx_probs[size_t(i) * E + e];
  }
  float* dlogits = sized(ws.dlogits, size_t(T) * E);
  K.router_backward(dlogits, dtop_w, dprobs, a.probs.data(), a.top_idx.data(), T, E, k);
  linear_backward(K, dx, 1.0f, g.router, dlogits, x, w.router, T, D, E);
}

// dst[t, 0:d) = λ^(e0 + de·t) · src[t, 0:d) for t < n (src row stride ld): the decay weights of
// the terms that connect a prefix's final lightning state with its tokens or its continuations'.
void decayed_rows(float* dst, const float* src, int ld, int n, int d, float lambda, int e0, int de) {
  for (int t = 0; t < n; ++t) {
    const float f = float(std::pow(double(lambda), double(e0 + de * t)));
    const float* x = src + size_t(t) * ld;
    float* y = dst + size_t(t) * d;
    for (int i = 0; i < d; ++i) y[i] = f * x[i];
  }
}

// A continuation c (n tokens) of a prefix whose final state is S (per head, d×d) computes, on top
// of its own terms, o_t += λ^t·q_t·S (t = 1..n). Its gradients: dq_t += λ^t·do_t·Sᵀ (into dqkv)
// and dS += Σ_t λ^t·q_tᵀ·do_t (into dS).
void continuation_state_backward(const Kernels& K, float* dqkv, float* dS, const float* dout, const float* qkv,
                                 const float* S, const float* lambda, int n, int H, int d, Workspace& ws) {
  const int Hd = H * d, row = 3 * Hd;
  const size_t dd = size_t(d) * d;
  float* dos = sized(ws.scaled, size_t(n) * d);
  for (int h = 0; h < H; ++h) {
    decayed_rows(dos, dout + size_t(h) * d, Hd, n, d, lambda[h], 1, 1);
    K.gemm(false, true, n, d, d, 1.0f, dos, d, S + h * dd, d, 1.0f, dqkv + size_t(h) * 3 * d, row);
    K.gemm(true, false, d, d, n, 1.0f, qkv + size_t(h) * 3 * d, row, dos, d, 1.0f, dS + h * dd, d);
  }
}

// A prefix (P tokens) ends in S = Σ_s λ^(P−s)·k_sᵀ·v_s. From dS: dk_s += λ^(P−s)·v_s·dSᵀ and
// dv_s += λ^(P−s)·k_s·dS (into dqkv).
void prefix_state_backward(const Kernels& K, float* dqkv, const float* dS, const float* qkv, const float* lambda,
                           int P, int H, int d, Workspace& ws) {
  const int row = 3 * H * d;
  const size_t dd = size_t(d) * d;
  float* xs = sized(ws.scaled, size_t(P) * d);
  for (int h = 0; h < H; ++h) {
    const float* k = qkv + size_t(h) * 3 * d + d;
    decayed_rows(xs, k + d, row, P, d, lambda[h], P - 1, -1);  // decayed v
    K.gemm(false, true, P, d, d, 1.0f, xs, d, dS + h * dd, d, 1.0f, dqkv + size_t(h) * 3 * d + d, row);
    decayed_rows(xs, k, row, P, d, lambda[h], P - 1, -1);  // decayed k
    K.gemm(false, false, P, d, d, 1.0f, xs, d, dS + h * dd, d, 1.0f, dqkv + size_t(h) * 3 * d + 2 * d, row);
  }
}

// a (T,D) = lightning attention of layer input n1 over the batch's segments (a continuation starts
// from its prefix's final state, kept in A.pstate). When states is non-null, states[s] receives
// segment s's final lightning state (H,d,d).
void lightning_layer_forward(const Kernels& K, const Dims& m, const LayerView& w, const float* lambda, int block,
                             const Batch& b, LayerActs& A, float* const* states, const Workspace& ws) {
  const int T = b.size(), H = m.H, d = m.d, Hd = H * d, D = m.D;
  const size_t Hdd = size_t(H) * d * d;
  float* pst = ws.prefixes ? sized(A.pstate, size_t(ws.prefixes) * Hdd) : nullptr;
  float* qkv_pre = sized(A.qkv_pre, size_t(T) * 3 * Hd);
  float* qkv = sized(A.qkv, size_t(T) * 3 * Hd);
  linear(K, qkv_pre, A.n1.data(), w.qkv, T, D, 3 * Hd);
  K.silu_forward(qkv, qkv_pre, size_t(T) * 3 * Hd);
  float* core = sized(A.core, size_t(T) * Hd);
  for (int s = 0; s < b.segments(); ++s) {
    const int t0 = b.seg[s], n = b.seg[s + 1] - t0;
    if (n == 0) continue;
    const int p = b.parent_of(s), sl = ws.slot[size_t(s)];
    const float* in = p >= 0 ? pst + size_t(ws.slot[size_t(p)]) * Hdd : nullptr;
    float* out = states ? states[s] : sl >= 0 ? pst + size_t(sl) * Hdd : nullptr;
    K.lightning_forward(core + size_t(t0) * Hd, out, qkv + size_t(t0) * 3 * Hd, in, lambda, n, H, d, block);
  }
  K.rmsnorm_forward(sized(A.y, size_t(T) * Hd), sized(A.rstd_y, size_t(T)), core, w.attn_norm, T, Hd, 1e-6f);
  float* g_pre = sized(A.g_pre, size_t(T) * Hd);
  linear(K, g_pre, A.n1.data(), w.gate, T, D, Hd);
  float* gated = sized(A.gated, size_t(T) * Hd);
  K.sigmoid_mul_forward(gated, g_pre, A.y.data(), size_t(T) * Hd);
  linear(K, sized(A.a, size_t(T) * D), gated, w.out, T, Hd, D);
}

void lightning_layer_backward(const Kernels& K, const Dims& m, const LayerView& w, const LayerView& g,
                              const float* lambda, int block, const Batch& b, LayerActs& A, const float* da, float* dn1,
                              Workspace& ws) {
  const int T = b.size(), H = m.H, d = m.d, Hd = H * d, D = m.D;
  float* dgated = sized(ws.dA, size_t(T) * Hd);
  linear_backward(K, dgated, 0.0f, g.out, da, A.gated.data(), w.out, T, Hd, D);
  float* dg = sized(ws.dB, size_t(T) * Hd);
  float* dy = sized(ws.dC, size_t(T) * Hd);
  K.sigmoid_mul_backward(dg, dy, dgated, A.g_pre.data(), A.y.data(), size_t(T) * Hd);
  linear_backward(K, dn1, 1.0f, g.gate, dg, A.n1.data(), w.gate, T, D, Hd);
  float* dcore = dgated;  // reuse: dgated is dead
  K.rmsnorm_backward(dcore, g.attn_norm, dy, A.core.data(), w.attn_norm, A.rstd_y.data(), T, Hd);
  float* dqkv = sized(ws.dD, size_t(T) * 3 * Hd);
  const size_t Hdd = size_t(H) * d * d;
  float* dS = nullptr;
  if (ws.prefixes) {
    dS = sized(ws.dstate, size_t(ws.prefixes) * Hdd);
    std::fill(dS, dS + size_t(ws.prefixes) * Hdd, 0.0f);
  }
  // In reverse: every continuation adds to its prefix's dS before the prefix (earlier) reads it.
  for (int s = b.segments() - 1; s >= 0; --s) {
    const int t0 = b.seg[s], n = b.seg[s + 1] - t0;
    if (n == 0) continue;
    float* dq = dqkv + size_t(t0) * 3 * Hd;
    const float* q = A.qkv.data() + size_t(t0) * 3 * Hd;
    K.lightning_backward(dq, dcore + size_t(t0) * Hd, q, lambda, n, H, d, block);
    if (const int sl = ws.slot[size_t(s)]; sl >= 0)
      prefix_state_backward(K, dq, dS + size_t(sl) * Hdd, q, lambda, n, H, d, ws);
    if (const int p = b.parent_of(s); p >= 0) {
      const size_t ps = size_t(ws.slot[size_t(p)]) * Hdd;
      continuation_state_backward(K, dq, dS + ps, dcore + size_t(t0) * Hd, q, A.pstate.data() + ps, lambda, n, H,
                                  d, ws);
    }
  }
  float* dpre = sized(ws.dxg, size_t(T) * 3 * Hd);
  K.silu_backward(dpre, dqkv, A.qkv_pre.data(), size_t(T) * 3 * Hd);
  linear_backward(K, dn1, 1.0f, g.qkv, dpre, A.n1.data(), w.qkv, T, D, 3 * Hd);
}

// Rows [a0, a0+na) then [b0, b0+nb) of x (row width W) into dst: a prefix and its continuation
// as one sequence, for the softmax kernels (which see one whole segment).
float* join_rows(Vec& dst, const float* x, int a0, int na, int b0, int nb, int W) {
  float* out = sized(dst, size_t(na + nb) * W);
  std::copy(x + size_t(a0) * W, x + size_t(a0 + na) * W, out);
  std::copy(x + size_t(b0) * W, x + size_t(b0 + nb) * W, out + size_t(na) * W);
  return out;
}

// The lse of a joined sequence (H, P+n) from the prefix's (H, P) and the continuation's (H, n).
float* join_lse(Vec& dst, const float* lp, int P, const float* ln, int n, int H) {
  float* out = sized(dst, size_t(P + n) * H);
  for (int h = 0; h < H; ++h) {
    std::copy(lp + size_t(h) * P, lp + size_t(h + 1) * P, out + size_t(h) * (P + n));
    std::copy(ln + size_t(h) * n, ln + size_t(h + 1) * n, out + size_t(h) * (P + n) + P);
  }
  return out;
}

void softmax_layer_forward(const Kernels& K, const Dims& m, const LayerView& w, const ModelConfig& c, const Batch& b,
                           const int* pos, LayerActs& A, Workspace& ws) {
  const int T = b.size(), H = m.H, Hkv = m.Hkv, d = m.d, Hd = H * d, Kd = Hkv * d, D = m.D;
  float* q = sized(A.q, size_t(T) * Hd);
  float* kk = sized(A.kk, size_t(T) * Kd);
  float* vv = sized(A.vv, size_t(T) * Kd);
  linear(K, q, A.n1.data(), w.q, T, D, Hd);
  linear(K, kk, A.n1.data(), w.k, T, D, Kd);
  linear(K, vv, A.n1.data(), w.v, T, D, Kd);
  K.rope_forward(q, T, H, d, Hd, c.rotary_dim, pos, float(c.rope_theta));
  K.rope_forward(kk, T, Hkv, d, Kd, c.rotary_dim, pos, float(c.rope_theta));
  float* core = sized(A.core, size_t(T) * Hd);
  float* lse = sized(A.lse, size_t(T) * H);
  for (int s = 0; s < b.segments(); ++s) {
    const int t0 = b.seg[s], n = b.seg[s + 1] - t0;
    if (n == 0) continue;
    const int p = b.parent_of(s);
    if (p < 0) {
      K.attention_forward(core + size_t(t0) * Hd, lse + size_t(t0) * H, q + size_t(t0) * Hd, Hd,
                          kk + size_t(t0) * Kd, vv + size_t(t0) * Kd, Kd, n, H, Hkv, d);
      continue;
    }
    // A continuation: attention over prefix + own tokens; keep the own tokens' rows.
    const int p0 = b.seg[p], P = b.seg[p + 1] - p0, L = P + n;
    float* cq = join_rows(ws.cq, q, p0, P, t0, n, Hd);
    float* ck = join_rows(ws.ck, kk, p0, P, t0, n, Kd);
    float* cv = join_rows(ws.cv, vv, p0, P, t0, n, Kd);
    float* co = sized(ws.co, size_t(L) * Hd);
    float* clse = sized(ws.clse, size_t(L) * H);
    K.attention_forward(co, clse, cq, Hd, ck, cv, Kd, L, H, Hkv, d);
    std::copy(co + size_t(P) * Hd, co + size_t(L) * Hd, core + size_t(t0) * Hd);
    for (int h = 0; h < H; ++h)
      std::copy(clse + size_t(h) * L + P, clse + size_t(h + 1) * L, lse + size_t(t0) * H + size_t(h) * n);
  }
  linear(K, sized(A.a, size_t(T) * D), core, w.o, T, Hd, D);
}

// Prefixes come before their continuations, so a prefix's dk, dv are assigned before its
// continuations add what their queries send back to its keys and values.
void softmax_layer_backward(const Kernels& K, const Dims& m, const LayerView& w, const LayerView& g,
                            const ModelConfig& c, const Batch& b, const int* pos, LayerActs& A, const float* da,
                            float* dn1, Workspace& ws) {
  const int T = b.size(), H = m.H, Hkv = m.Hkv, d = m.d, Hd = H * d, Kd = Hkv * d, D = m.D;
  float* dcore = sized(ws.dA, size_t(T) * Hd);
  linear_backward(K, dcore, 0.0f, g.o, da, A.core.data(), w.o, T, Hd, D);
  float* dq = sized(ws.dB, size_t(T) * Hd);
  float* dk = sized(ws.dC, size_t(T) * Kd);
  float* dv = sized(ws.dD, size_t(T) * Kd);
  for (int s = 0; s < b.segments(); ++s) {
    const int t0 = b.seg[s], n = b.seg[s + 1] - t0;
    if (n == 0) continue;
    const int p = b.parent_of(s);
    if (p < 0) {
      K.attention_backward(dq + size_t(t0) * Hd, dk + size_t(t0) * Kd, dv + size_t(t0) * Kd,
                           dcore + size_t(t0) * Hd, A.core.data() + size_t(t0) * Hd, A.lse.data() + size_t(t0) * H,
                           A.q.data() + size_t(t0) * Hd, Hd, A.kk.data() + size_t(t0) * Kd,
                           A.vv.data() + size_t(t0) * Kd, Kd, n, H, Hkv, d);
      continue;
    }
    // The joined sequence again, with no gradient on the prefix's outputs (the prefix's own
    // backward above has them); its keys and values collect this continuation's share.
    const int p0 = b.seg[p], P = b.seg[p + 1] - p0, L = P + n;
    float* cq = join_rows(ws.cq, A.q.data(), p0, P, t0, n, Hd);
    float* ck = join_rows(ws.ck, A.kk.data(), p0, P, t0, n, Kd);
    float* cv = join_rows(ws.cv, A.vv.data(), p0, P, t0, n, Kd);
    float* co = join_rows(ws.co, A.core.data(), p0, P, t0, n, Hd);
    float* clse = join_lse(ws.clse, A.lse.data() + size_t(p0) * H, P, A.lse.data() + size_t(t0) * H, n, H);
    float* cdo = sized(ws.cdo, size_t(L) * Hd);
    std::fill(cdo, cdo + size_t(P) * Hd, 0.0f);
    std::copy(dcore + size_t(t0) * Hd, dcore + size_t(t0 + n) * Hd, cdo + size_t(P) * Hd);
    float* cdq = sized(ws.cdq, size_t(L) * Hd);
    float* cdk = sized(ws.cdk, size_t(L) * Kd);
    float* cdv = sized(ws.cdv, size_t(L) * Kd);
    K.attention_backward(cdq, cdk, cdv, cdo, co, clse, cq, Hd, ck, cv, Kd, L, H, Hkv, d);
    std::copy(cdq + size_t(P) * Hd, cdq + size_t(L) * Hd, dq + size_t(t0) * Hd);
    std::copy(cdk + size_t(P) * Kd, cdk + size_t(L) * Kd, dk + size_t(t0) * Kd);
    std::copy(cdv + size_t(P) * Kd, cdv + size_t(L) * Kd, dv + size_t(t0) * Kd);
    for (size_t i = 0; i < size_t(P) * Kd; ++i) {
      dk[size_t(p0) * Kd + i] += cdk[i];
      dv[size_t(p0) * Kd + i] += cdv[i];
    }
  }
  K.rope_backward(dq, T, H, d, Hd, c.rotary_dim, pos, float(c.rope_theta));
  K.rope_backward(dk, T, Hkv, d, Kd, c.rotary_dim, pos, float(c.rope_theta));
  linear_backward(K, dn1, 1.0f, g.q, dq, A.n1.data(), w.q, T, D, Hd);
  linear_backward(K, dn1, 1.0f, g.k, dk, A.n1.data(), w.k, T, D, Kd);
  linear_backward(K, dn1, 1.0f, g.v, dv, A.n1.data(), w.v, T, D, Kd);
}

// out = src_a·alpha + src_b·beta over n values.
void axpby(float* out, const float* a, float alpha, const float* b, float beta, size_t n) {
  parallel_for(n, [&](size_t i0, size_t i1) {
#pragma omp simd
    for (size_t i = i0; i < i1; ++i) out[i] = a[i] * alpha + b[i] * beta;
  }, 1 << 14);
}

float attn_alpha(const ModelConfig& c, int l) {
  return float(c.is_softmax(l) ? c.layernorm_full_attention_alpha : c.layernorm_linear_attention_alpha);
}
float attn_beta(const ModelConfig& c, int l) {
  return float(c.is_softmax(l) ? c.layernorm_full_attention_beta : c.layernorm_linear_attention_beta);
}

// Appends each segment's keys and values (after RoPE) to its decode state's cache for layer l.
void capture_kv(const Batch& b, const LayerActs& A, const Dims& m, int l, DecodeState* const* capture) {
  const size_t Kd = size_t(m.Hkv) * m.d;
  for (int s = 0; s < b.segments(); ++s) {
    DecodeState& st = *capture[s];
    const size_t t0 = size_t(b.seg[s]), t1 = size_t(b.seg[s + 1]);
    st.kcache[l].assign(A.kk.begin() + t0 * Kd, A.kk.begin() + t1 * Kd);
    st.vcache[l].assign(A.vv.begin() + t0 * Kd, A.vv.begin() + t1 * Kd);
  }
}

}  // namespace

void Model::forward(const Batch& b, Workspace& ws, ForwardOut& out, DecodeState* const* capture) const {
  const Kernels& K = *kern_;
  const Dims m(cfg_);
  const int T = b.size(), D = m.D;
  M1_CHECK(T > 0 && b.seg.size() >= 2 && int(b.targets.size()) == T);
  ModelView w = const_cast<Model*>(this)->view(const_cast<float*>(params_.data()));
  ws.layers.resize(size_t(m.L));
  M1_CHECK(b.parent.empty() || int(b.parent.size()) == b.segments());
  M1_CHECK(!capture || !b.has_prefixes());
  ws.slot.assign(size_t(b.segments()), -1);
  ws.prefixes = 0;
  for (int s = 0; s < b.segments(); ++s)
    if (const int p = b.parent_of(s); p >= 0) {
      M1_CHECK(p < s && b.parent_of(p) < 0 && b.seg[p + 1] > b.seg[p]);
      if (ws.slot[size_t(p)] < 0) ws.slot[size_t(p)] = ws.prefixes++;
    }
  ws.expand.clear();
  if (ws.prefixes)
    for (int s = 0; s < b.segments(); ++s) {
      if (ws.slot[size_t(s)] >= 0) continue;  // a prefix: counted with each continuation
      if (const int p = b.parent_of(s); p >= 0)
        for (int t = b.seg[p]; t < b.seg[p + 1]; ++t) ws.expand.push_back(t);
      for (int t = b.seg[s]; t < b.seg[s + 1]; ++t) ws.expand.push_back(t);
    }
  int* pos = sized(ws.pos, size_t(T));
  for (int s = 0; s < b.segments(); ++s) {
    const int p = b.parent_of(s), off = p >= 0 ? b.seg[p + 1] - b.seg[p] : 0;
    for (int t = b.seg[s]; t < b.seg[s + 1]; ++t) pos[t] = off + t - b.seg[s];
  }
  float* h = sized(ws.h, size_t(T) * D);
  K.embedding_forward(h, b.tokens.data(), w.embed, T, D);
  const float eps = float(cfg_.rms_norm_eps), coef = float(cfg_.router_aux_loss_coef);
  out.aux_loss = 0;
  for (int l = 0; l < m.L; ++l) {
    LayerActs& A = ws.layers[l];
    const LayerView& lw = w.layers[l];
    std::copy(h, h + size_t(T) * D, sized(A.x, size_t(T) * D));
    K.rmsnorm_forward(sized(A.n1, size_t(T) * D), sized(A.rstd1, size_t(T)), A.x.data(), lw.input_norm, T, D, eps);
    if (cfg_.is_softmax(l)) {
      softmax_layer_forward(K, m, lw, cfg_, b, pos, A, ws);
      if (capture) capture_kv(b, A, m, l, capture);
    } else {
      std::vector<float*> st;
      if (capture)
        for (int s = 0; s < b.segments(); ++s) st.push_back(capture[s]->lstate[l].data());
      lightning_layer_forward(K, m, lw, lambda_[l].data(), cfg_.block_size, b, A, capture ? st.data() : nullptr, ws);
    }
    float* h1 = sized(A.h1, size_t(T) * D);
    axpby(h1, cfg_.postnorm ? A.n1.data() : A.x.data(), attn_alpha(cfg_, l), A.a.data(), attn_beta(cfg_, l),
          size_t(T) * D);
    K.rmsnorm_forward(sized(A.n2, size_t(T) * D), sized(A.rstd2, size_t(T)), h1, lw.post_norm, T, D, eps);
    float* mo = sized(ws.mo, size_t(T) * D);
    moe_forward(K, m, lw, coef, A.n2.data(), T, A.moe, mo, ws.expand);
    out.aux_loss += A.moe.aux / float(m.L);
    axpby(h, cfg_.postnorm ? A.n2.data() : h1, float(cfg_.layernorm_mlp_alpha), mo, float(cfg_.layernorm_mlp_beta),
          size_t(T) * D);
  }
  if (capture)
    for (int s = 0; s < b.segments(); ++s) capture[s]->len = b.seg[s + 1] - b.seg[s];
  std::copy(h, h + size_t(T) * D, sized(ws.hL, size_t(T) * D));
  K.rmsnorm_forward(sized(ws.nf, size_t(T) * D), sized(ws.rstdf, size_t(T)), ws.hL.data(), w.final_norm, T, D, eps);
  out.logp.resize(size_t(T));
  out.entropy.resize(size_t(T));
  K.lm_head_forward(out.logp.data(), out.entropy.data(), sized(ws.logsm, size_t(T) * m.V), ws.nf.data(), w.lm_head,
                    b.targets.data(), T, D, m.V);
}

void Model::backward(const Batch& b, Workspace& ws, const float* dlogp, float aux_weight, float* grads) const {
  const Kernels& K = *kern_;
  const Dims m(cfg_);
  const int T = b.size(), D = m.D;
  ModelView w = const_cast<Model*>(this)->view(const_cast<float*>(params_.data()));
  ModelView g = view(grads);
  float* dh = sized(ws.dh, size_t(T) * D);
  float* dn = sized(ws.dn, size_t(T) * D);
  K.lm_head_backward(dn, g.lm_head, dlogp, ws.logsm.data(), ws.nf.data(), w.lm_head, b.targets.data(), T, D, m.V);
  K.rmsnorm_backward(dh, g.final_norm, dn, ws.hL.data(), w.final_norm, ws.rstdf.data(), T, D);
  const float coef = float(cfg_.router_aux_loss_coef), aux_scale = aux_weight / float(m.L);
  float* dh1 = sized(ws.dh1, size_t(T) * D);
  float* dtmp = sized(ws.dtmp, size_t(T) * D);
  for (int l = m.L - 1; l >= 0; --l) {
    LayerActs& A = ws.layers[l];
    const LayerView &lw = w.layers[l], &lg = g.layers[l];
    // h_out = src·α_mlp + moe(n2)·β_mlp, src = n2 (postnorm) or h1
    const float am = float(cfg_.layernorm_mlp_alpha), bm = float(cfg_.layernorm_mlp_beta);
    axpby(dn, dh, cfg_.postnorm ? am : 0.0f, dh, 0.0f, size_t(T) * D);
    axpby(dtmp, dh, bm, dh, 0.0f, size_t(T) * D);
    moe_backward(K, m, lw, lg, coef, aux_scale, A.n2.data(), T, A.moe, dtmp, dn, ws);
    K.rmsnorm_backward(dh1, lg.post_norm, dn, A.h1.data(), lw.post_norm, A.rstd2.data(), T, D);
    if (!cfg_.postnorm)
      for (size_t i = 0; i < size_t(T) * D; ++i) dh1[i] += am * dh[i];
    // h1 = src·α + a·β, src = n1 (postnorm) or x
    const float aa = attn_alpha(cfg_, l), ba = attn_beta(cfg_, l);
    axpby(dn, dh1, cfg_.postnorm ? aa : 0.0f, dh1, 0.0f, size_t(T) * D);
    axpby(dtmp, dh1, ba, dh1, 0.0f, size_t(T) * D);
    if (cfg_.is_softmax(l))
      softmax_layer_backward(K, m, lw, lg, cfg_, b, ws.pos.data(), A, dtmp, dn, ws);
    else
      lightning_layer_backward(K, m, lw, lg, lambda_[l].data(), cfg_.block_size, b, A, dtmp, dn, ws);
    K.rmsnorm_backward(dh, lg.input_norm, dn, A.x.data(), lw.input_norm, A.rstd1.data(), T, D);
    if (!cfg_.postnorm)
      for (size_t i = 0; i < size_t(T) * D; ++i) dh[i] += aa * dh1[i];
  }
  K.embedding_backward(g.embed, dh, b.tokens.data(), T, D);
}

void Model::prefill(const std::vector<std::vector<int>>& prompts, DecodeState* const* states, float* logsm) const {
  Batch b;
  for (auto& p : prompts) {
    M1_CHECK(!p.empty());
    b.add_segment(p);
  }
  for (auto& t : b.targets) t = -1;
  for (size_t s = 0; s < prompts.size(); ++s) *states[s] = new_state();
  Workspace ws;
  ForwardOut out;
  forward(b, ws, out, states);
  const int V = cfg_.vocab_size;
  for (int s = 0; s < b.segments(); ++s)
    std::copy(ws.logsm.begin() + size_t(b.seg[s + 1] - 1) * V, ws.logsm.begin() + size_t(b.seg[s + 1]) * V,
              logsm + size_t(s) * V);
}

void Model::decode_step(const int* tokens, DecodeState* const* states, int B, float* logsm) const {
  const Kernels& K = *kern_;
  const Dims m(cfg_);
  const int D = m.D, H = m.H, Hkv = m.Hkv, d = m.d, Hd = H * d, Kd = Hkv * d;
  ModelView w = const_cast<Model*>(this)->view(const_cast<float*>(params_.data()));
  thread_local Workspace ws;
  thread_local LayerActs A;
  int* pos = sized(ws.pos, size_t(B));
  for (int b = 0; b < B; ++b) pos[b] = states[b]->len;
  float* h = sized(ws.h, size_t(B) * D);
  K.embedding_forward(h, tokens, w.embed, B, D);
  const float eps = float(cfg_.rms_norm_eps), coef = float(cfg_.router_aux_loss_coef);
  std::vector<float*> ptrs(static_cast<size_t>(B));
  std::vector<const float*> kp(static_cast<size_t>(B)), vp(static_cast<size_t>(B));
  std::vector<int> lens(static_cast<size_t>(B));
  for (int l = 0; l < m.L; ++l) {
    const LayerView& lw = w.layers[l];
    float* n1 = sized(A.n1, size_t(B) * D);
    K.rmsnorm_forward(n1, sized(A.rstd1, size_t(B)), h, lw.input_norm, B, D, eps);
    float* core = sized(A.core, size_t(B) * Hd);
    float* gated = sized(A.gated, size_t(B) * Hd);
    if (cfg_.is_softmax(l)) {
      float* q = sized(A.q, size_t(B) * Hd);
      float* kk = sized(A.kk, size_t(B) * Kd);
      float* vv = sized(A.vv, size_t(B) * Kd);
      linear(K, q, n1, lw.q, B, D, Hd);
      linear(K, kk, n1, lw.k, B, D, Kd);
      linear(K, vv, n1, lw.v, B, D, Kd);
      K.rope_forward(q, B, H, d, Hd, cfg_.rotary_dim, pos, float(cfg_.rope_theta));
      K.rope_forward(kk, B, Hkv, d, Kd, cfg_.rotary_dim, pos, float(cfg_.rope_theta));
      for (int b = 0; b < B; ++b) {
        auto& kc = states[b]->kcache[l];
        auto& vc = states[b]->vcache[l];
        kc.insert(kc.end(), kk + size_t(b) * Kd, kk + size_t(b + 1) * Kd);
        vc.insert(vc.end(), vv + size_t(b) * Kd, vv + size_t(b + 1) * Kd);
      }
      for (int b = 0; b < B; ++b) {
        kp[b] = states[b]->kcache[l].data();
        vp[b] = states[b]->vcache[l].data();
        lens[b] = int(states[b]->kcache[l].size() / Kd);
      }
      K.attention_decode(core, q, kp.data(), vp.data(), lens.data(), B, H, Hkv, d);
      linear(K, sized(A.a, size_t(B) * D), core, lw.o, B, Hd, D);
    } else {
      float* qkv = sized(A.qkv, size_t(B) * 3 * Hd);
      float* pre = sized(A.qkv_pre, size_t(B) * 3 * Hd);
      linear(K, pre, n1, lw.qkv, B, D, 3 * Hd);
      K.silu_forward(qkv, pre, size_t(B) * 3 * Hd);
      for (int b = 0; b < B; ++b) ptrs[b] = states[b]->lstate[l].data();
      K.lightning_decode(core, ptrs.data(), qkv, lambda_[l].data(), B, H, d);
      float* y = sized(A.y, size_t(B) * Hd);
      K.rmsnorm_forward(y, sized(A.rstd_y, size_t(B)), core, lw.attn_norm, B, Hd, 1e-6f);
      float* g = sized(A.g_pre, size_t(B) * Hd);
      linear(K, g, n1, lw.gate, B, D, Hd);
      K.sigmoid_mul_forward(gated, g, y, size_t(B) * Hd);
      linear(K, sized(A.a, size_t(B) * D), gated, lw.out, B, Hd, D);
    }
    float* h1 = sized(A.h1, size_t(B) * D);
    axpby(h1, cfg_.postnorm ? n1 : h, attn_alpha(cfg_, l), A.a.data(), attn_beta(cfg_, l), size_t(B) * D);
    float* n2 = sized(A.n2, size_t(B) * D);
    K.rmsnorm_forward(n2, sized(A.rstd2, size_t(B)), h1, lw.post_norm, B, D, eps);
    float* mo = sized(ws.mo, size_t(B) * D);
    moe_forward(K, m, lw, coef, n2, B, A.moe, mo, IVec{});
    axpby(h, cfg_.postnorm ? n2 : h1, float(cfg_.layernorm_mlp_alpha), mo, float(cfg_.layernorm_mlp_beta),
          size_t(B) * D);
  }
  float* nf = sized(ws.nf, size_t(B) * D);
  K.rmsnorm_forward(nf, sized(ws.rstdf, size_t(B)), h, w.final_norm, B, D, eps);
  std::vector<int> none(size_t(B), -1);
  std::vector<float> lp(static_cast<size_t>(B));
  K.lm_head_forward(lp.data(), nullptr, logsm, nf, w.lm_head, none.data(), B, D, m.V);
  for (int b = 0; b < B; ++b) states[b]->len += 1;
}

}  // namespace m1
