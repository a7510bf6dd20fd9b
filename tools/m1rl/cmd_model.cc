// m1rl model init|info|logprobs|grad, generate, sft, eval.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/log.h"
#include "base/stop.h"
#include "model/bpe_tokenizer.h"
#include "model/chat_template.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/objectives.h"
#include "model/safetensors.h"
#include "model/sft.h"
#include "model/tasks.h"
#include "model/tokenizer.h"
#include "tools/m1rl/commands.h"

namespace m1::cli {
namespace {

using json = nlohmann::json;

int fail(const Status& s) {
  std::fprintf(stderr, "m1rl: error: %s\n", s.message().c_str());
  return 1;
}

std::string human(double x) {
  if (x >= 1e12) return fmt::format("{:.2f}T", x / 1e12);
  if (x >= 1e9) return fmt::format("{:.1f}B", x / 1e9);
  if (x >= 1e6) return fmt::format("{:.2f}M", x / 1e6);
  if (x >= 1e3) return fmt::format("{:.1f}K", x / 1e3);
  return fmt::format("{:.0f}", x);
}

// One JSONL object per non-empty line; errors name FILE:LINE.
Result<std::vector<json>> read_jsonl(const std::string& path) {
  M1_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  int ln = 0;
  while (std::getline(in, line)) {
    ++ln;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return Status::errorf("{}:{}: expected a JSON object on this line", path, ln);
    j["__line"] = ln;
    out.push_back(std::move(j));
  }
  return out;
}

Result<std::vector<int>> read_tokens(const json& j, const std::string& path, int V) {
  const int ln = j["__line"].get<int>();
  if (!j.contains("tokens") || !j["tokens"].is_array())
    return Status::errorf("{}:{}: key 'tokens': expected an array of token ids", path, ln);
  std::vector<int> t;
  for (const auto& x : j["tokens"]) {
    if (!x.is_number_integer()) return Status::errorf("{}:{}: key 'tokens': expected integers", path, ln);
    const int64_t v = x.get<int64_t>();
    if (v < 0 || v >= V) return Status::errorf("{}:{}: key 'tokens': id {} is outside [0, {})", path, ln, v, V);
    t.push_back(int(v));
  }
  if (t.empty()) return Status::errorf("{}:{}: key 'tokens': expected at least one token", path, ln);
  return t;
}

struct WsHolder {
  Workspace* ws = new_workspace();
  ~WsHolder() { delete_workspace(ws); }
};

}  // namespace

int model_init(const std::string& config, uint64_t seed, const std::string& out, bool force) {
  auto cfg = load_model_config(config);
  if (!cfg.is_ok()) return fail(cfg.status());
  if (auto s = validate_model_config(cfg.value(), config); !s.is_ok()) return fail(s);
  for (const char* f : {"config.json", "model.safetensors"})
    if (!force && path_exists(path_join(out, f)))
      return fail(Status::errorf("--out {}: already holds a model ({} exists); pass --force to replace it", out, f));
  std::optional<Model> made;
  try {
    made.emplace(cfg.value());
  } catch (const std::bad_alloc&) {
    const double params = compute_model_stats(cfg.value()).total_params;
    return fail(Status::errorf("{}: a model of {} parameters needs {:.1f} GB for its fp32 weights: out of memory",
                               config, human(params), params * 4 / 1e9));
  }
  Model& m = *made;
  m.init_random(seed);
  if (auto s = make_dirs(out); !s.is_ok()) return fail(s);
  if (auto s = save_model(m, out, "F32"); !s.is_ok()) return fail(s);
  std::printf("wrote %s/config.json and %s/model.safetensors (%s parameters)\n", out.c_str(), out.c_str(),
              human(double(m.num_params())).c_str());
  return 0;
}

int model_info(const std::string& path, bool as_json) {
  const std::string cfg_path = path_exists(path_join(path, "config.json")) ? path_join(path, "config.json") : path;
  auto cfg = load_model_config(cfg_path);
  if (!cfg.is_ok()) return fail(cfg.status());
  const ModelStats st = compute_model_stats(cfg.value());
  if (as_json) {
    json j;
    j["total_params"] = st.total_params;
    j["active_params"] = st.active_params;
    j["weights_bytes"] = st.weights_bytes;
    j["flops_per_token"] = json::object();
    j["state_bytes_per_sequence"] = json::object();
    for (auto& [c, f] : st.flops_per_token) j["flops_per_token"][std::to_string(c)] = f;
    for (auto& [c, b] : st.state_bytes_per_sequence) j["state_bytes_per_sequence"][std::to_string(c)] = b;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  const ModelConfig& c = cfg.value();
  std::printf("%s: %d layers (%d lightning, %d softmax), D=%d, H=%d, d=%d, E=%d top-%d, V=%d\n", cfg_path.c_str(),
              c.num_hidden_layers, c.num_lightning_layers(), c.num_softmax_layers(), c.hidden_size,
              c.num_attention_heads, c.head_dim, c.num_local_experts, c.num_experts_per_tok, c.vocab_size);
  std::printf("total parameters   %s\nactive per token   %s (embedding and LM head excluded)\nweights (bf16)     %s bytes\n",
              human(st.total_params).c_str(), human(st.active_params).c_str(), human(st.weights_bytes).c_str());
  std::printf("%10s %16s %22s\n", "context", "FLOPs/token", "decode state/sequence");
  for (auto& [ctx, f] : st.flops_per_token)
    std::printf("%10lld %16s %20s B\n", (long long)ctx, human(f).c_str(),
                human(st.state_bytes_per_sequence.at(ctx)).c_str());
  return 0;
}

int model_logprobs(const std::string& dir, const std::string& input, const std::string& out) {
  auto m = load_model(dir);
  if (!m.is_ok()) return fail(m.status());
  auto lines = read_jsonl(input);
  if (!lines.is_ok()) return fail(lines.status());
  const int V = m->config().vocab_size;
  std::vector<std::vector<int>> segs;
  for (const json& j : lines.value()) {
    auto t = read_tokens(j, input, V);
    if (!t.is_ok()) return fail(t.status());
    segs.push_back(std::move(t.value()));
  }
  std::string result;
  WsHolder ws;
  // Pack up to ~4096 tokens per forward.
  for (size_t i = 0; i < segs.size();) {
    Batch b;
    size_t j = i;
    while (j < segs.size() && (j == i || b.size() + segs[j].size() <= 4096)) b.add_segment(segs[j++]);
    ForwardOut o;
    m->forward(b, *ws.ws, o);
    for (size_t s = i; s < j; ++s) {
      const int t0 = b.seg[s - i], n = b.seg[s - i + 1] - t0;
      json lp = json::array();
      for (int t = 0; t + 1 < n; ++t) lp.push_back(o.logp[size_t(t0 + t)]);
      result += json{{"logprobs", lp}}.dump() + "\n";
    }
    i = j;
  }
  if (auto s = write_file_atomic(out, result); !s.is_ok()) return fail(s);
  return 0;
}

int model_grad(const std::string& dir, const std::string& input, const std::string& out, const std::string& objective,
               double eps_high, bool eps_high_set) {
  auto obj = objective_from_name(objective);
  if (!obj.is_ok()) return fail(obj.status().with_context("--objective"));
  ObjectiveParams op = obj.value();
  if (eps_high_set) {
    if (!(eps_high > 0) || !std::isfinite(eps_high)) return fail(Status::error("--eps-high: expected a positive number"));
    if (op.kind == Objective::kCispo || op.kind == Objective::kCispoMask)
      op.eps_high_is = eps_high;
    else
      op.clip_high = eps_high;
  }
  auto m = load_model(dir);
  if (!m.is_ok()) return fail(m.status());
  auto lines = read_jsonl(input);
  if (!lines.is_ok()) return fail(lines.status());
  if (lines->empty()) return fail(Status::errorf("{}: no input lines", input));
  const int V = m->config().vocab_size;
  Batch b;
  std::vector<float> blogp, adv;
  std::vector<int> rows, seq;  // batch row predicting each response token
  int S = 0;
  for (const json& j : lines.value()) {
    const int ln = j["__line"].get<int>();
    auto t = read_tokens(j, input, V);
    if (!t.is_ok()) return fail(t.status());
    const int n = int(t->size());
    if (!j.contains("prompt_len") || !j["prompt_len"].is_number_integer())
      return fail(Status::errorf("{}:{}: key 'prompt_len': expected an integer", input, ln));
    const int64_t P = j["prompt_len"].get<int64_t>();
    if (P < 1 || P >= n)
      return fail(Status::errorf("{}:{}: key 'prompt_len': {} must be in [1, {}) (at least one prompt and one "
                                 "response token)", input, ln, P, n));
    if (!j.contains("advantage") || !j["advantage"].is_number() || !std::isfinite(j["advantage"].get<double>()))
      return fail(Status::errorf("{}:{}: key 'advantage': expected a finite number", input, ln));
    const float A = j["advantage"].get<float>();
    std::vector<float> bl;
    if (j.contains("behavior_logprobs")) {
      const json& x = j["behavior_logprobs"];
      if (!x.is_array() || int64_t(x.size()) != n - P)
        return fail(Status::errorf("{}:{}: key 'behavior_logprobs': expected {} numbers (one per response token)",
                                   input, ln, n - P));
      for (const auto& v : x) {
        if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() > 0)
          return fail(Status::errorf("{}:{}: key 'behavior_logprobs': expected finite numbers <= 0", input, ln));
        bl.push_back(v.get<float>());
      }
    }
    const int t0 = b.size();
    b.add_segment(t.value());
    for (int r = int(P) - 1; r < n - 1; ++r) {
      rows.push_back(t0 + r);
      seq.push_back(S);
      adv.push_back(A);
      blogp.push_back(bl.empty() ? NAN : bl[size_t(r - (P - 1))]);
    }
    ++S;
  }
  WsHolder ws;
  ForwardOut o;
  m->forward(b, *ws.ws, o);
  const int N = int(rows.size());
  std::vector<float> lp(static_cast<size_t>(N)), dJ(static_cast<size_t>(N));
  for (int i = 0; i < N; ++i) {
    lp[i] = o.logp[size_t(rows[i])];
    if (std::isnan(blogp[i])) blogp[i] = lp[i];  // on-policy: r = 1
  }
  ObjectiveStats st = objective_grad(op, lp.data(), blogp.data(), adv.data(), seq.data(), N, S, dJ.data());
  std::vector<float> dlogp(static_cast<size_t>(b.size()), 0.f);
  for (int i = 0; i < N; ++i) dlogp[size_t(rows[i])] = -dJ[i];
  std::vector<float> g(m->num_params(), 0.f);
  m->backward(b, *ws.ws, dlogp.data(), 1.0f, g.data());
  std::vector<TensorToWrite> ts;
  for (const ParamSpec& s : m->specs()) ts.push_back({s.name, s.shape, g.data() + s.offset});
  if (auto s = write_safetensors(out, ts, "F32"); !s.is_ok()) return fail(s);
  const double loss = -st.J + o.aux_loss;
  std::printf("%s\n", json{{"loss", loss}, {"objective", objective_name(op.kind)}, {"tokens", N},
                           {"aux_loss", o.aux_loss}, {"clip_fraction", st.clip_fraction}}.dump().c_str());
  return 0;
}

namespace {

// The tokenizer of model directory DIR (model_dir_tokenizer), checked against the model's
// vocabulary.
Result<std::shared_ptr<Tokenizer>> model_tokenizer(const Model& m, const std::string& dir, const std::string& file) {
  const std::string path = model_dir_tokenizer(dir, file);
  M1_ASSIGN_OR_RETURN(std::shared_ptr<Tokenizer> tok, load_tokenizer(path));
  if (m.config().vocab_size < tok->vocab_size())
    return Status::errorf("{}: vocab_size {} is smaller than the tokenizer's {} ({})", dir, m.config().vocab_size,
                          tok->vocab_size(), path.empty() ? "the byte-level tokenizer" : path);
  return tok;
}

}  // namespace

int generate(const std::string& dir, const std::string& prompt, int max_new, double temperature, double top_p,
             int top_k, uint64_t seed, const std::string& tokenizer, const std::string& chat_template) {
  auto m = load_model(dir);
  if (!m.is_ok()) return fail(m.status());
  auto t = model_tokenizer(m.value(), dir, tokenizer);
  if (!t.is_ok()) return fail(t.status());
  const Tokenizer& tok = *t.value();
  auto tmpl = resolve_chat_template(chat_template, "--chat-template");
  if (!tmpl.is_ok()) return fail(tmpl.status());
  GenRequest r;
  r.prompt = encode_chat_prompt(tok, tmpl.value(), prompt);
  r.max_new = max_new;
  r.sampling.temperature = float(temperature);
  r.sampling.top_p = float(top_p);
  r.sampling.top_k = top_k;
  r.seed = seed;
  auto res = m1::generate(m.value(), {r}, tok.eos_id(), 1);
  std::printf("%s\n", tok.decode(res[0].tokens).c_str());
  double lp = 0;
  for (float x : res[0].logprobs) lp += x;
  std::fprintf(stderr, "[%zu tokens, finish=%s, sum logprob %.3f]\n", res[0].tokens.size(), res[0].finish.c_str(), lp);
  return 0;
}

int sft(const std::string& config) {
  auto c = load_sft_config(config);
  if (!c.is_ok()) return fail(c.status());
  install_stop_handlers();
  SftReport rep;
  if (auto s = run_sft(c.value(), &rep); !s.is_ok()) return fail(s);
  json j = {{"start_step", rep.start_step}, {"end_step", rep.end_step},  {"first_loss", rep.first_loss},
            {"last_loss", rep.last_loss},   {"eval_before", rep.eval_before}, {"eval_after", rep.eval_after},
            {"tokens_per_s", rep.tokens_per_s}, {"checkpoint", rep.final_dir}, {"interrupted", rep.interrupted}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int eval(const std::string& dir, const std::string& tasks, int min_d, int max_d, int n, uint64_t seed, int max_new,
         const std::string& tokenizer, const std::string& chat_template) {
  auto m = load_model(dir);
  if (!m.is_ok()) return fail(m.status());
  auto t = model_tokenizer(m.value(), dir, tokenizer);
  if (!t.is_ok()) return fail(t.status());
  const Tokenizer& tok = *t.value();
  auto tmpl = resolve_chat_template(chat_template, "--chat-template");
  if (!tmpl.is_ok()) return fail(tmpl.status());
  std::vector<std::string> names;
  std::stringstream ss(tasks);
  for (std::string t; std::getline(ss, t, ',');) {
    if (!make_task(t)) return fail(Status::errorf("--tasks: unknown task '{}'", t));
    names.push_back(t);
  }
  EvalResult r = evaluate_tasks(m.value(), tok, names, min_d, max_d, n, seed, max_new, tmpl.value());
  for (size_t i = 0; i < std::min<size_t>(5, r.prompts.size()); ++i)
    std::printf("  %-24s -> %-28s (expected %s)\n", r.prompts[i].c_str(), r.responses[i].c_str(), r.answers[i].c_str());
  std::printf("%s\n", json{{"accuracy", r.accuracy}, {"format", r.format}, {"examples", n}}.dump().c_str());
  return 0;
}

}  // namespace m1::cli
