// Release ↔ transformers checkpoint layouts (see hf_convert.h for the two layouts).
#include "model/hf_convert.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "base/log.h"

namespace m1 {
namespace {

using json = nlohmann::json;

std::string layer_prefix(int l) { return "model.layers." + std::to_string(l) + "."; }

// The attention parameters of layer L (same names in both layouts).
void add_attention(const ModelConfig& c, int l, std::vector<TensorDecl>* out) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, d = c.head_dim, Hkv = c.num_key_value_heads;
  const std::string p = layer_prefix(l) + "self_attn.";
  if (c.is_softmax(l)) {
    out->push_back({p + "q_proj.weight", {H * d, D}});
    out->push_back({p + "k_proj.weight", {Hkv * d, D}});
    out->push_back({p + "v_proj.weight", {Hkv * d, D}});
    out->push_back({p + "o_proj.weight", {D, H * d}});
  } else {
    out->push_back({p + "qkv_proj.weight", {3 * H * d, D}});
    out->push_back({p + "output_gate.weight", {H * d, D}});
    out->push_back({p + "norm.weight", {H * d}});
    out->push_back({p + "out_proj.weight", {D, H * d}});
  }
}

std::string expert_name(int l, int e, const char* w) {
  return layer_prefix(l) + "block_sparse_moe.experts." + std::to_string(e) + "." + w + ".weight";
}

// Parses "model.layers.L.block_sparse_moe.experts.E.wK.weight" (K in 1..3) or
// "model.layers.L.block_sparse_moe.gate.weight" (K = 0, E = -1). False for any other name.
bool parse_moe_name(const std::string& name, int* layer, int* expert, int* k) {
  int l = -1, e = -1, w = -1, n = 0;
  if (std::sscanf(name.c_str(), "model.layers.%d.block_sparse_moe.experts.%d.w%d.weight%n", &l, &e, &w, &n) == 3 &&
      size_t(n) == name.size() && w >= 1 && w <= 3) {
    *layer = l, *expert = e, *k = w;
    return true;
  }
  n = 0;
  if (std::sscanf(name.c_str(), "model.layers.%d.block_sparse_moe.gate.weight%n", &l, &n) == 1 &&
      size_t(n) == name.size()) {
    *layer = l, *expert = -1, *k = 0;
    return true;
  }
  return false;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t x : s) n *= x;
  return n;
}

bool power_of_two(int x) { return x > 0 && (x & (x - 1)) == 0; }

// Names transformers uses for layer L's router and packed experts.
std::string hf_gate(int l) { return layer_prefix(l) + "mlp.gate.weight"; }
std::string hf_gate_up(int l) { return layer_prefix(l) + "mlp.experts.gate_up_proj"; }
std::string hf_down(int l) { return layer_prefix(l) + "mlp.experts.down_proj"; }

// One tensor of the output: its data is its pieces laid end to end.
struct OutTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<TensorSlice> pieces;
};

// Files copied from IN_DIR when present: the tokenizer travels with the weights.
const char* const kCopied[] = {"tokenizer.json",    "tokenizer_config.json", "special_tokens_map.json",
                               "added_tokens.json", "vocab.json",            "merges.txt",
                               "tokenizer.model",   "chat_template.jinja",   "chat_template.json"};

// Keys both config layouts share that m1rl does not model; carried from IN's config.json.
const char* const kPassThrough[] = {"bos_token_id", "eos_token_id", "pad_token_id", "max_position_embeddings"};

std::string dtype_flag(const std::string& dtype) { return dtype == "BF16" ? "bfloat16" : "float32"; }

// The output plan: every output tensor with the input slices it is made of.
Result<std::vector<OutTensor>> plan(const SafetensorsReader& rd, const ModelConfig& c, CheckpointLayout to) {
  std::map<std::string, TensorSlice> src;
  const std::vector<TensorDecl> decls = release_param_decls(c);
  for (const TensorDecl& d : decls) {
    M1_ASSIGN_OR_RETURN(TensorSlice s, locate_param(rd, c, d.name, d.shape));
    src[d.name] = std::move(s);
  }
  std::vector<OutTensor> out;
  for (const TensorDecl& d : decls) {
    int l = 0, e = 0, k = 0;
    if (to == CheckpointLayout::kRelease || !parse_moe_name(d.name, &l, &e, &k)) {
      out.push_back({d.name, d.shape, {src.at(d.name)}});
      continue;
    }
    if (k == 0) {
      out.push_back({hf_gate(l), d.shape, {src.at(d.name)}});
      const int64_t E = c.num_local_experts, I = c.intermediate_size, D = c.hidden_size;
      OutTensor gu{hf_gate_up(l), {E, 2 * I, D}, {}}, dn{hf_down(l), {E, D, I}, {}};
      for (int x = 0; x < c.num_local_experts; ++x) {
        gu.pieces.push_back(src.at(expert_name(l, x, "w1")));
        gu.pieces.push_back(src.at(expert_name(l, x, "w3")));
        dn.pieces.push_back(src.at(expert_name(l, x, "w2")));
      }
      out.push_back(std::move(gu));
      out.push_back(std::move(dn));
    }
    // per-expert w1/w2/w3 went into the packed tensors with the gate
  }
  return out;
}

// The input's dtype when all used tensors share F32 or BF16; else F32 (lossless for F16).
std::string input_dtype(const SafetensorsReader& rd, const std::vector<OutTensor>& plan) {
  std::set<std::string> seen;
  for (const OutTensor& t : plan)
    for (const TensorSlice& s : t.pieces) seen.insert(rd.find(s.name)->dtype);
  return seen.size() == 1 && *seen.begin() == "BF16" ? "BF16" : "F32";
}

std::string strip_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Writes the shards, the index, config.json, generation_config.json and the copied files into TMP.
Status write_output(const SafetensorsReader& rd, const std::vector<OutTensor>& tensors, const std::string& in_dir,
                    const std::string& tmp, const std::string& config_text, const json& in_cfg,
                    const ConvertOptions& opts, ConvertReport* rep) {
  const size_t esize = rep->dtype == "BF16" ? 2 : 4;
  // Greedy shards: a tensor opens a new shard when it would push the current one past the limit.
  std::vector<std::vector<size_t>> shards(1);
  uint64_t cur = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t b = uint64_t(numel(tensors[i].shape)) * esize;
    if (!shards.back().empty() && cur + b > opts.max_shard_bytes) {
      shards.emplace_back();
      cur = 0;
    }
    shards.back().push_back(i);
    cur += b;
    rep->bytes += b;
  }
  const size_t n = shards.size();
  json weight_map = json::object();
  std::vector<float> buf;
  constexpr int64_t kChunk = int64_t(1) << 22;  // elements staged at a time (16 MiB of fp32)
  for (size_t s = 0; s < n; ++s) {
    const std::string file =
        n == 1 ? "model.safetensors" : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, n);
    std::vector<TensorDecl> decls;
    for (size_t i : shards[s]) {
      decls.push_back({tensors[i].name, tensors[i].shape});
      weight_map[tensors[i].name] = file;
    }
    M1_ASSIGN_OR_RETURN(SafetensorsStreamWriter w,
                        SafetensorsStreamWriter::create(path_join(tmp, file), decls, rep->dtype));
    for (size_t i : shards[s]) {
      for (const TensorSlice& p : tensors[i].pieces) {
        for (int64_t done = 0; done < p.count;) {
          const int64_t m = std::min(kChunk, p.count - done);
          buf.resize(size_t(m));
          M1_RETURN_IF_ERROR(rd.read_f32_range(p.name, p.shape, p.begin + done, m, buf.data()));
          M1_RETURN_IF_ERROR(w.append(buf.data(), size_t(m)));
          done += m;
        }
      }
    }
    M1_RETURN_IF_ERROR(w.finish());
    if (n > 1) log_info("convert: wrote {} ({} tensors)", file, shards[s].size());
  }
  rep->shards = int(n);
  rep->tensors = tensors.size();
  if (n > 1) {
    const json index = {{"metadata", {{"total_size", rep->bytes}}}, {"weight_map", weight_map}};
    M1_RETURN_IF_ERROR(write_file(path_join(tmp, "model.safetensors.index.json"), index.dump(2) + "\n"));
  }
  M1_RETURN_IF_ERROR(write_file(path_join(tmp, "config.json"), config_text));
  const std::string gen_in = path_join(in_dir, "generation_config.json");
  if (path_exists(gen_in)) {
    M1_ASSIGN_OR_RETURN(std::string g, read_file(gen_in));
    M1_RETURN_IF_ERROR(write_file(path_join(tmp, "generation_config.json"), g));
    rep->copied.push_back("generation_config.json");
  } else {
    json g = {{"_from_model_config", true}};
    for (const char* k : {"bos_token_id", "eos_token_id", "pad_token_id"})
      if (in_cfg.contains(k)) g[k] = in_cfg[k];
    M1_RETURN_IF_ERROR(write_file(path_join(tmp, "generation_config.json"), g.dump(2) + "\n"));
  }
  for (const char* f : kCopied) {
    if (!path_exists(path_join(in_dir, f))) continue;
    M1_ASSIGN_OR_RETURN(std::string text, read_file(path_join(in_dir, f)));
    M1_RETURN_IF_ERROR(write_file(path_join(tmp, f), text));
    rep->copied.push_back(f);
  }
  return fsync_dir(tmp);
}

}  // namespace

std::vector<TensorDecl> release_param_decls(const ModelConfig& c) {
  const int64_t V = c.vocab_size, D = c.hidden_size, I = c.intermediate_size, E = c.num_local_experts;
  std::vector<TensorDecl> out;
  out.push_back({"model.embed_tokens.weight", {V, D}});
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    out.push_back({layer_prefix(l) + "input_layernorm.weight", {D}});
    add_attention(c, l, &out);
    out.push_back({layer_prefix(l) + "post_attention_layernorm.weight", {D}});
    out.push_back({layer_prefix(l) + "block_sparse_moe.gate.weight", {E, D}});
    for (int e = 0; e < c.num_local_experts; ++e) {
      out.push_back({expert_name(l, e, "w1"), {I, D}});
      out.push_back({expert_name(l, e, "w3"), {I, D}});
      out.push_back({expert_name(l, e, "w2"), {D, I}});
    }
  }
  out.push_back({"model.norm.weight", {D}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {V, D}});
  return out;
}

Result<TensorSlice> locate_param(const SafetensorsReader& rd, const ModelConfig& c, const std::string& name,
                                 const std::vector<int64_t>& shape) {
  auto check = [&](const TensorInfo* t, const std::vector<int64_t>& want) -> Status {
    if (t->shape != want)
      return Status::errorf("{}: tensor '{}': shape {} does not match the expected {}", t->file, t->name,
                            shape_text(t->shape), shape_text(want));
    if (t->dtype != "F32" && t->dtype != "BF16" && t->dtype != "F16")
      return Status::errorf("{}: tensor '{}': dtype {} is not supported (F32, BF16 and F16 are read)", t->file,
                            t->name, t->dtype);
    return Status::ok();
  };
  if (const TensorInfo* t = rd.find(name)) {
    M1_RETURN_IF_ERROR(check(t, shape));
    return TensorSlice{name, shape, 0, numel(shape)};
  }
  int l = 0, e = 0, k = 0;
  if (!parse_moe_name(name, &l, &e, &k)) return Status::errorf("{}: tensor '{}' not found", rd.path(), name);
  const int64_t E = c.num_local_experts, I = c.intermediate_size, D = c.hidden_size;
  TensorSlice s;
  if (k == 0) {
    s = {hf_gate(l), shape, 0, numel(shape)};
  } else if (k == 2) {
    s = {hf_down(l), {E, D, I}, int64_t(e) * D * I, D * I};
  } else {
    s = {hf_gate_up(l), {E, 2 * I, D}, int64_t(e) * 2 * I * D + (k == 3 ? I * D : 0), I * D};
  }
  const TensorInfo* t = rd.find(s.name);
  if (t == nullptr)
    return Status::errorf("{}: tensor '{}' not found (nor its transformers form '{}')", rd.path(), name, s.name);
  M1_RETURN_IF_ERROR(check(t, s.shape));
  return s;
}

bool is_hf_buffer(const std::string& name) {
  for (const char* b : {".self_attn.slope_rate", ".self_attn.query_decay", ".self_attn.key_decay",
                        ".self_attn.diagonal_decay"}) {
    const size_t n = std::strlen(b);
    if (name.size() > n && name.compare(name.size() - n, n, b) == 0 && name.rfind("model.layers.", 0) == 0)
      return true;
  }
  return false;
}

std::vector<std::string> conversion_changes(const ModelConfig& c, CheckpointLayout to) {
  std::vector<std::string> why;
  if (c.layout == to) return why;
  const int H = c.num_attention_heads;
  if (to == CheckpointLayout::kHf) {
    if (c.rotary_dim < c.head_dim)
      why.push_back(fmt::format("RoPE rotates {} of {} dims per head (rotary_dim), transformers' MiniMax rotates the "
                                "whole head",
                                c.rotary_dim, c.head_dim));
    if (!power_of_two(H))
      why.push_back(fmt::format("num_attention_heads {} is not a power of two: transformers' MiniMax gives the "
                                "lightning heads decay slopes (2^(-8/H))^(h+1), the release the ALiBi table",
                                H));
    if (!c.postnorm)
      why.push_back("postnorm is false, transformers' MiniMax is always post-norm");
  } else if (!power_of_two(H)) {
    why.push_back(fmt::format("num_attention_heads {} is not a power of two: the release's ALiBi decay slopes "
                              "differ from the (2^(-8/H))^(h+1) of transformers' MiniMax",
                              H));
  }
  return why;
}

Result<ConvertReport> convert_checkpoint(const std::string& in_arg, const std::string& out_arg,
                                         const ConvertOptions& opts) {
  const std::string in_dir = strip_slashes(in_arg), out_dir = strip_slashes(out_arg);
  if (!path_exists(in_dir)) return Status::errorf("{}: no such directory", in_dir);
  if (!is_dir(in_dir)) return Status::errorf("{}: not a directory (expected a model directory)", in_dir);
  if (opts.dtype != "" && opts.dtype != "F32" && opts.dtype != "BF16")
    return Status::errorf("dtype '{}': expected F32 or BF16", opts.dtype);
  if (opts.max_shard_bytes == 0) return Status::error("max shard size: must be positive");
  const std::string cfg_path = path_join(in_dir, "config.json");
  M1_ASSIGN_OR_RETURN(std::string cfg_text, read_file(cfg_path));
  M1_ASSIGN_OR_RETURN(ModelConfig cfg, parse_model_config(cfg_text, cfg_path));
  const json in_cfg = json::parse(cfg_text);  // parse_model_config accepted it

  ConvertReport rep;
  rep.from = cfg.layout;
  rep.to = opts.to;
  rep.changes = conversion_changes(cfg, opts.to);
  if (!rep.changes.empty() && !opts.force) {
    std::string why;
    for (const std::string& w : rep.changes) why += (why.empty() ? "" : "; ") + w;
    return Status::errorf("{}: converting this {} checkpoint to {} would change the model's function: {}. Pass "
                          "--force to convert anyway",
                          in_dir, layout_name(cfg.layout), layout_name(opts.to), why);
  }
  M1_ASSIGN_OR_RETURN(SafetensorsReader rd, SafetensorsReader::open(in_dir));
  M1_ASSIGN_OR_RETURN(std::vector<OutTensor> tensors, plan(rd, cfg, opts.to));
  rep.dtype = opts.dtype.empty() ? input_dtype(rd, tensors) : opts.dtype;
  std::set<std::string> used;
  for (const OutTensor& t : tensors)
    for (const TensorSlice& p : t.pieces) used.insert(p.name);
  for (const TensorInfo& t : rd.tensors())
    if (!used.count(t.name) && !is_hf_buffer(t.name)) rep.dropped.push_back(t.name);

  // The output config: this layout's keys, the shared ones m1rl does not model carried over.
  json out_cfg = json::parse(opts.to == CheckpointLayout::kHf ? model_config_to_hf_json(cfg) : model_config_to_json(cfg));
  for (const char* k : kPassThrough)
    if (in_cfg.contains(k)) out_cfg[k] = in_cfg[k];
  out_cfg[opts.to == CheckpointLayout::kHf ? "dtype" : "torch_dtype"] = dtype_flag(rep.dtype);
  const std::string out_text = out_cfg.dump(2) + "\n";
  M1_RETURN_IF_ERROR(parse_model_config(out_text, "converted config.json").status());  // round-trips

  if (path_exists(out_dir)) {
    if (!is_dir(out_dir)) return Status::errorf("{}: exists and is not a directory", out_dir);
    if (!list_dir(out_dir).empty())
      return Status::errorf("{}: exists and is not empty (the output must be a new or empty directory)", out_dir);
  }
  M1_RETURN_IF_ERROR(make_dirs(parent_dir(out_dir)));
  std::string tmpl = out_dir + ".tmp-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr)
    return Status::errorf("{}: cannot create a temporary directory next to it: {}", out_dir, std::strerror(errno));
  const std::string tmp = tmpl;
  Status s = write_output(rd, tensors, in_dir, tmp, out_text, in_cfg, opts, &rep);
  if (s.is_ok()) s = rename_durable(tmp, out_dir);  // replaces an empty OUT_DIR atomically
  if (!s.is_ok()) {
    remove_all(tmp);
    return s;
  }
  return rep;
}

}  // namespace m1
