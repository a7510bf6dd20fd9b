#include "model/sft.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "actors/metrics/tb_writer.h"
#include "base/check.h"
#include "base/file.h"
#include "base/stop.h"
#include "base/log.h"
#include "base/rng.h"
#include "model/bpe_tokenizer.h"
#include "model/chat_template.h"
#include "model/checkpoint.h"
#include "model/generate.h"
#include "model/tasks.h"
#include "model/toml_config.h"

namespace m1 {
namespace {

constexpr uint64_t kEvalSeedSalt = 0x5eedE7A1ull;

struct Example {
  std::vector<int> tokens;
  int prompt_len = 0;
};

// Draws task examples from one Rng stream; the stream's state is the data cursor.
class TaskStream {
 public:
  TaskStream(const std::vector<std::string>& names, int min_d, int max_d, uint64_t seed) : rng_(seed), min_d_(min_d), max_d_(max_d) {
    for (auto& n : names) tasks_.push_back(make_task(n));
  }
  TaskExample next() {
    const Task& t = *tasks_[rng_.below(tasks_.size())];
    const int hi = std::min(max_d_, t.max_difficulty()), lo = std::min(min_d_, hi);
    const int d = lo + int(rng_.below(uint64_t(hi - lo + 1)));
    return t.sample(rng_, d);
  }
  Rng& rng() { return rng_; }

 private:
  std::vector<std::unique_ptr<Task>> tasks_;
  Rng rng_;
  int min_d_, max_d_;
};

double lr_at(const SftConfig& c, int64_t step) {
  if (step < c.warmup) return c.lr * double(step + 1) / std::max(1.0, c.warmup);
  const double prog = double(step - c.warmup) / std::max(1.0, double(c.steps) - c.warmup);
  const double cosv = 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, prog)));
  return c.lr * (c.min_lr_frac + (1.0 - c.min_lr_frac) * cosv);
}

// TOKENIZER (a tokenizer.json, or "" for the byte-level one) is copied into the checkpoint, so
// that `m1rl generate DIR` and `m1rl eval DIR` find it there.
Status save_checkpoint(const std::string& root, int64_t step, const Model& m, const std::vector<float>& mom,
                       const std::vector<float>& var, const Rng& data_rng, int64_t examples,
                       const std::string& tokenizer) {
  return commit_checkpoint(root, step, [&](const std::string& dir) -> Status {
    M1_RETURN_IF_ERROR(save_model(m, dir, "F32"));
    if (!tokenizer.empty()) M1_RETURN_IF_ERROR(copy_tokenizer_files(tokenizer, dir));
    M1_RETURN_IF_ERROR(save_adam_moments(m, mom, var, dir));
    nlohmann::json st;
    st["format"] = "m1rl-sft-checkpoint";
    st["version"] = 1;
    st["step"] = step;
    st["examples"] = examples;
    st["data_rng"] = data_rng.state_strings();
    return write_file(path_join(dir, "state.json"), st.dump(2));
  });
}

Status load_checkpoint(const std::string& dir, Model* m, std::vector<float>* mom, std::vector<float>* var, Rng* data_rng,
                       int64_t* step, int64_t* examples) {
  M1_ASSIGN_OR_RETURN(Model loaded, load_model(dir));
  *m = std::move(loaded);
  M1_RETURN_IF_ERROR(load_adam_moments(*m, dir, mom, var));
  const std::string sp = path_join(dir, "state.json");
  M1_ASSIGN_OR_RETURN(std::string text, read_file(sp));
  try {
    auto st = nlohmann::json::parse(text);
    *step = st.at("step").get<int64_t>();
    *examples = st.at("examples").get<int64_t>();
    data_rng->set_state_strings(st.at("data_rng").get<std::vector<std::string>>());
  } catch (const std::exception& e) {
    return Status::errorf("{}: invalid checkpoint state: {}", sp, e.what());
  }
  return Status::ok();
}

// The pure part of load_sft_config: every key of T, with its range and the relations between
// keys, then check_unknown(); no file is read. PATH names the config in errors. Every key is
// asked for unconditionally, so a config with only model.config and output.dir asks for all of
// them: sft_config_keys() relies on it.
Result<SftConfig> read_sft_config(TomlConfig& t, const std::string& path) {
  SftConfig c;
  c.source = path;
  M1_ASSIGN_OR_RETURN(c.model_config, t.get_path("model.config"));
  M1_ASSIGN_OR_RETURN(c.init_from, t.get_path("model.init_from"));
  if (c.model_config.empty() == c.init_from.empty())
    return Status::errorf("{}: key 'model.config' or 'model.init_from': exactly one must be given", path);
  M1_ASSIGN_OR_RETURN(int64_t seed, t.get_int("model.seed", 1, 0, INT64_MAX));
  c.seed = uint64_t(seed);
  M1_ASSIGN_OR_RETURN(c.tokenizer, t.get_path("model.tokenizer"));
  M1_ASSIGN_OR_RETURN(c.chat_template, t.get_string("model.chat_template", ""));
  M1_RETURN_IF_ERROR(resolve_chat_template(c.chat_template, path + ": key 'model.chat_template'").status());
  M1_ASSIGN_OR_RETURN(c.tasks, t.get_strings("data.tasks", {"add"}));
  if (c.tasks.empty()) return Status::errorf("{}: key 'data.tasks': expected at least one task", path);
  for (auto& n : c.tasks)
    if (!make_task(n)) return Status::errorf("{}: key 'data.tasks': unknown task '{}'", path, n);
  M1_ASSIGN_OR_RETURN(int64_t mind, t.get_int("data.min_difficulty", 1, 1, 100));
  M1_ASSIGN_OR_RETURN(int64_t maxd, t.get_int("data.max_difficulty", 2, 1, 100));
  if (maxd < mind) return Status::errorf("{}: key 'data.max_difficulty': must be >= data.min_difficulty", path);
  c.min_difficulty = int(mind);
  c.max_difficulty = int(maxd);
  M1_ASSIGN_OR_RETURN(int64_t steps, t.get_int("train.steps", 100, 1, 100000000));
  M1_ASSIGN_OR_RETURN(int64_t batch, t.get_int("train.batch", 32, 1, 1 << 20));
  M1_ASSIGN_OR_RETURN(c.lr, t.get_double("train.lr", 3e-3, 0, 10));
  M1_ASSIGN_OR_RETURN(c.warmup, t.get_double("train.warmup", 10, 0, 1e9));
  M1_ASSIGN_OR_RETURN(c.weight_decay, t.get_double("train.weight_decay", 0.0, 0, 10));
  M1_ASSIGN_OR_RETURN(c.clip, t.get_double("train.clip", 1.0, 0, 1e9));
  M1_ASSIGN_OR_RETURN(int64_t threads, t.get_int("train.threads", 1, 1, 256));
  M1_ASSIGN_OR_RETURN(int64_t ck, t.get_int("train.checkpoint_every", 50, 1, 100000000));
  M1_ASSIGN_OR_RETURN(int64_t ev, t.get_int("train.eval_every", 50, 0, 100000000));
  M1_ASSIGN_OR_RETURN(int64_t evn, t.get_int("train.eval_examples", 64, 1, 1000000));
  M1_ASSIGN_OR_RETURN(int64_t mx, t.get_int("train.max_new", 24, 1, 1000000));
  c.steps = int(steps);
  c.batch = int(batch);
  c.threads = int(threads);
  c.checkpoint_every = int(ck);
  c.eval_every = int(ev);
  c.eval_examples = int(evn);
  c.max_new = int(mx);
  M1_ASSIGN_OR_RETURN(c.out_dir, t.get_path("output.dir", true));
  M1_RETURN_IF_ERROR(t.check_unknown());
  return c;
}

}  // namespace

Result<SftConfig> load_sft_config(const std::string& path) {
  M1_ASSIGN_OR_RETURN(TomlConfig t, TomlConfig::load(path));
  M1_ASSIGN_OR_RETURN(SftConfig c, read_sft_config(t, path));
  // The model it starts from, checked before output.dir is created.
  if (!c.model_config.empty()) {
    auto mc = load_model_config(c.model_config);
    if (!mc.is_ok()) return mc.status().with_context(path + ": key 'model.config'");
    M1_RETURN_IF_ERROR(validate_model_config(mc.value(), c.model_config));
  } else if (!path_exists(path_join(c.init_from, "config.json"))) {
    return Status::errorf("{}: key 'model.init_from': {} is not a model directory (no config.json)", path, c.init_from);
  }
  if (!c.tokenizer.empty()) {  // the tokenizer must load now, not after the output dir exists
    auto tok = load_tokenizer(c.tokenizer);
    if (!tok.is_ok()) return tok.status().with_context(path + ": key 'model.tokenizer'");
  }
  return c;
}

std::vector<std::string> sft_config_keys() {
  const std::string source = "sft_config_keys";
  Result<TomlConfig> t = TomlConfig::parse("[model]\nconfig = \"model.json\"\n[output]\ndir = \"out\"\n", source);
  M1_CHECK(t.is_ok());
  Result<SftConfig> c = read_sft_config(t.value(), source);
  M1_CHECK_MSG(c.is_ok(), c.status().message().c_str());  // the minimal config must stay valid
  const std::set<std::string>& keys = t.value().asked_keys();
  return std::vector<std::string>(keys.begin(), keys.end());
}

EvalResult evaluate_tasks(const Model& m, const Tokenizer& tok, const std::vector<std::string>& tasks, int min_d,
                          int max_d, int n, uint64_t seed, int max_new, const std::string& chat_template) {
  if (tasks.empty() || n <= 0) return EvalResult{};  // nothing to evaluate on
  TaskStream stream(tasks, min_d, max_d, seed ^ kEvalSeedSalt);
  std::vector<TaskExample> ex;
  std::vector<GenRequest> reqs;
  for (int i = 0; i < n; ++i) {
    ex.push_back(stream.next());
    GenRequest r;
    r.prompt = encode_chat_prompt(tok, chat_template, ex.back().prompt);
    r.max_new = max_new;
    r.sampling.temperature = 0;
    reqs.push_back(std::move(r));
  }
  auto res = generate(m, reqs, tok.eos_id());
  EvalResult out;
  for (int i = 0; i < n; ++i) {
    auto task = make_task(ex[i].task);
    const std::string resp = tok.decode(res[i].tokens);
    Verdict v = task->verify(resp, ex[i].answer);
    out.accuracy += v.reward / n;
    out.format += v.format_reward / n;
    out.prompts.push_back(ex[i].prompt);
    out.responses.push_back(resp);
    out.answers.push_back(ex[i].answer);
  }
  return out;
}

Status run_sft(const SftConfig& c, SftReport* report) {
  auto loaded = load_tokenizer(c.tokenizer);
  if (!loaded.is_ok()) return loaded.status().with_context(c.source + ": key 'model.tokenizer'");
  const std::shared_ptr<Tokenizer> tokp = loaded.value();
  const Tokenizer& tok = *tokp;
  M1_ASSIGN_OR_RETURN(const std::string tmpl,
                      resolve_chat_template(c.chat_template, c.source + ": key 'model.chat_template'"));
  M1_RETURN_IF_ERROR(make_dirs(c.out_dir));
  const std::string ckroot = path_join(c.out_dir, "checkpoints");
  M1_RETURN_IF_ERROR(make_dirs(ckroot));
  M1_RETURN_IF_ERROR(prune_checkpoints(ckroot, c.keep_checkpoints));
  set_num_threads(c.threads);

  // The model: from the newest checkpoint, else init_from, else a fresh init.
  std::unique_ptr<Model> model;
  std::vector<float> mom, var;
  TaskStream data(c.tasks, c.min_difficulty, c.max_difficulty, c.seed);
  int64_t step = 0, examples = 0;
  CheckpointRef ck = latest_checkpoint(ckroot);
  if (ck.step >= 0) {
    model = std::make_unique<Model>(ModelConfig{});
    M1_RETURN_IF_ERROR(load_checkpoint(ck.dir, model.get(), &mom, &var, &data.rng(), &step, &examples)
                           .with_context("resuming from " + ck.dir));
    if (!c.quiet) log_info("sft: resumed from {} (step {})", ck.dir, step);
  } else if (!c.init_from.empty()) {
    M1_ASSIGN_OR_RETURN(Model m, load_model(c.init_from));
    model = std::make_unique<Model>(std::move(m));
  } else {
    M1_ASSIGN_OR_RETURN(ModelConfig mc, load_model_config(c.model_config));
    M1_RETURN_IF_ERROR(validate_model_config(mc, c.model_config));
    model = std::make_unique<Model>(std::move(mc));
    model->init_random(c.seed);
  }
  if (model->config().vocab_size < tok.vocab_size())
    return Status::errorf("{}: vocab_size {} is smaller than the tokenizer's {}", c.source,
                          model->config().vocab_size, tok.vocab_size());
  if (mom.empty()) {
    mom.assign(model->num_params(), 0.f);
    var.assign(model->num_params(), 0.f);
  }
  // Held-out prompts: never trained on.
  std::set<std::string> held;
  {
    TaskStream ev(c.tasks, c.min_difficulty, c.max_difficulty, c.seed ^ kEvalSeedSalt);
    for (int i = 0; i < c.eval_examples; ++i) held.insert(ev.next().prompt);
  }
  report->start_step = step;
  if (c.eval_every > 0 && step == 0) {
    report->eval_before = evaluate_tasks(*model, tok, c.tasks, c.min_difficulty, c.max_difficulty, c.eval_examples,
                                         c.seed, c.max_new, tmpl).accuracy;
    if (!c.quiet) log_info("sft: held-out accuracy at start {:.3f}", report->eval_before);
  }
  std::vector<float> grads(model->num_params());
  Workspace* ws = new_workspace();
  std::vector<double> losses;
  std::string metrics;
  TbWriter tb;  // OUT/tb/: each step's record as it is produced (a view; metrics.jsonl is durable)
  if (Status s = step < c.steps ? tb.open(path_join(c.out_dir, "tb")) : Status::ok(); !s.is_ok())
    log_warn("sft: no TensorBoard output: {}", s.message());
  const auto t_start = std::chrono::steady_clock::now();
  int64_t tokens_trained = 0;
  // Writes the metrics not yet on disk, then the checkpoint that covers them.
  auto checkpoint = [&]() -> Status {
    std::string prev;
    auto r = read_file(path_join(c.out_dir, "metrics.jsonl"));
    if (r.is_ok()) prev = r.value();
    M1_RETURN_IF_ERROR(write_file_atomic(path_join(c.out_dir, "metrics.jsonl"), prev + metrics));
    metrics.clear();
    M1_RETURN_IF_ERROR(save_checkpoint(ckroot, step, *model, mom, var, data.rng(), examples, c.tokenizer));
    return prune_checkpoints(ckroot, c.keep_checkpoints);
  };
  int64_t checkpointed = step;
  while (step < c.steps) {
    if (stop_requested()) {  // Ctrl-C: checkpoint what was trained, then return
      if (step > checkpointed) M1_RETURN_IF_ERROR(checkpoint());
      report->interrupted = true;
      if (!c.quiet) log_info("sft: stopped at step {} (checkpoint written)", step);
      break;
    }
    Batch b;
    int64_t nresp = 0;
    int skipped = 0;
    for (int i = 0; i < c.batch; ++i) {
      TaskExample ex = data.next();
      ++examples;
      if (held.count(ex.prompt)) {  // never train on a held-out prompt
        if (++skipped > 100000)
          return Status::errorf("{}: the held-out set covers every training prompt; lower train.eval_examples or "
                                "raise data.max_difficulty", c.source);
        --i;
        continue;
      }
      std::vector<int> toks = encode_chat_prompt(tok, tmpl, ex.prompt);
      const int plen = int(toks.size());
      auto resp = tok.encode(ex.demonstration);
      toks.insert(toks.end(), resp.begin(), resp.end());
      toks.push_back(tok.eos_id());
      const int t0 = b.size();
      b.add_segment(toks);
      for (int t = 0; t < plen - 1; ++t) b.targets[size_t(t0 + t)] = -1;
      nresp += int64_t(toks.size()) - plen;
    }
    ForwardOut out;
    model->forward(b, *ws, out);
    std::vector<float> dlogp(size_t(b.size()), 0.f);
    double loss = 0;
    for (int t = 0; t < b.size(); ++t)
      if (b.targets[size_t(t)] >= 0) {
        dlogp[size_t(t)] = -1.0f / float(nresp);
        loss -= out.logp[size_t(t)] / double(nresp);
      }
    std::fill(grads.begin(), grads.end(), 0.f);
    model->backward(b, *ws, dlogp.data(), 1.0f, grads.data());
    double gn2 = 0;
    for (float g : grads) gn2 += double(g) * g;
    const double gnorm = std::sqrt(gn2);
    const float scale = (c.clip > 0 && gnorm > c.clip) ? float(c.clip / gnorm) : 1.0f;
    const double lr = lr_at(c, step);
    model->kernels().adamw(model->params(), grads.data(), mom.data(), var.data(), model->num_params(), float(lr),
                           float(c.beta1), float(c.beta2), float(c.adam_eps), float(c.weight_decay), int(step + 1),
                           scale);
    ++step;
    tokens_trained += b.size();
    losses.push_back(loss);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    nlohmann::json mj = {{"step", step}, {"loss", loss}, {"aux_loss", out.aux_loss}, {"grad_norm", gnorm},
                         {"lr", lr}, {"tokens_per_s", tokens_trained / std::max(secs, 1e-9)}};
    if (c.eval_every > 0 && (step % c.eval_every == 0 || step == c.steps)) {
      EvalResult ev = evaluate_tasks(*model, tok, c.tasks, c.min_difficulty, c.max_difficulty, c.eval_examples,
                                     c.seed, c.max_new, tmpl);
      mj["eval_accuracy"] = ev.accuracy;
      mj["eval_format"] = ev.format;
      report->eval_after = ev.accuracy;
    }
    metrics += mj.dump() + "\n";
    if (Status s = tb.is_open() ? tb.write(mj) : Status::ok(); !s.is_ok()) {
      log_warn("sft: TensorBoard output stops here (metrics.jsonl keeps every record): {}", s.message());
      (void)tb.close();
    }
    if (!c.quiet && (step % 10 == 0 || step == c.steps || mj.contains("eval_accuracy")))
      log_info("sft: step {}/{} loss {:.4f} gnorm {:.3f} lr {:.2e} {:.0f} tok/s{}", step, c.steps, loss, gnorm, lr,
               tokens_trained / std::max(secs, 1e-9),
               mj.contains("eval_accuracy") ? fmt::format(" held-out acc {:.3f}", mj["eval_accuracy"].get<double>())
                                            : std::string());
    if (step % c.checkpoint_every == 0 || step == c.steps) {
      M1_RETURN_IF_ERROR(checkpoint());
      checkpointed = step;
    }
  }
  delete_workspace(ws);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  report->end_step = step;
  report->tokens_per_s = tokens_trained / std::max(secs, 1e-9);
  auto mean = [](const std::vector<double>& v, bool first) {
    if (v.empty()) return 0.0;
    const size_t n = std::min<size_t>(10, v.size());
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += first ? v[i] : v[v.size() - 1 - i];
    return s / double(n);
  };
  report->first_loss = mean(losses, true);
  report->last_loss = mean(losses, false);
  report->final_dir = latest_checkpoint(ckroot).dir;
  return Status::ok();
}

}  // namespace m1
