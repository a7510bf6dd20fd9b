// m1rl: one binary, subcommands `m1rl <noun> <verb>`. This TU holds all CLI11 parsing (it is
// slow to compile); the work is in cmd_*.cc.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>

#include "kernels/kernels.h"
#include "m1_version.h"
#include "tools/m1rl/commands.h"

namespace {

// A number option's check: finite (NaN and infinities are refused, which CLI::Range lets through)
// and in [lo, hi]; the message prints bounds in their shortest form (CLI::NonNegativeNumber's
// prints DBL_MAX as a 309-digit number). hi = infinity means no upper bound.
CLI::Validator finite_in(double lo, double hi = std::numeric_limits<double>::infinity()) {
  const std::string desc = std::isinf(hi) ? fmt::format("NUMBER >= {}", lo) : fmt::format("NUMBER in [{}, {}]", lo, hi);
  return CLI::Validator(
      [lo, hi](std::string& in) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(in.c_str(), &end);
        if (in.empty() || end == in.c_str() || *end != '\0') return fmt::format("'{}' is not a number", in);
        if (!std::isfinite(v)) return fmt::format("'{}' is not a finite number", in);
        if (v < lo || v > hi)
          return std::isinf(hi) ? fmt::format("{} is less than {}", in, lo)
                                : fmt::format("{} is out of range [{}, {}]", in, lo, hi);
        return {};
      },
      desc);
}

// An unsigned 64-bit option's check: digits only (CLI11 reads "-1" into a uint64_t as 2^64 − 1).
CLI::Validator unsigned_int() {
  return CLI::Validator(
      [](std::string& in) -> std::string {
        if (in.empty() || in.find_first_not_of("0123456789") != std::string::npos)
          return fmt::format("'{}' is not a non-negative integer", in);
        if (in.size() > 20 || (in.size() == 20 && in > "18446744073709551615"))
          return fmt::format("'{}' is larger than 18446744073709551615", in);
        return {};
      },
      "UINT");
}

// The environment variables m1rl reads, checked like options: "" when fine, else the error.
std::string check_environment(int* threads) {
  *threads = 1;
  if (const char* th = std::getenv("M1_THREADS")) {
    char* end = nullptr;
    const long v = std::strtol(th, &end, 10);
    if (*th == '\0' || *end != '\0' || v < 1 || v > 256)
      return fmt::format("M1_THREADS={}: expected an integer in [1, 256] (CPU kernel threads)", th);
    *threads = int(v);
  }
  if (const char* k = std::getenv("M1_KERNELS")) {
    if (std::string(k) != "naive" && std::string(k) != "fast")
      return fmt::format("M1_KERNELS={}: expected naive (the oracle kernels) or fast (the default)", k);
  }
  return {};
}

std::string version_text() {
#ifdef M1_HAVE_CUDA
  const char* cuda = "on";
#else
  const char* cuda = "off";
#endif
  return fmt::format("m1rl {} (commit {}, {} build, cuda {})", M1_VERSION, M1_GIT_COMMIT, M1_BUILD_TYPE, cuda);
}

// CLI11 reports an unknown command as "A subcommand is required" (or as an unexpected argument
// deep in a usage text): name it, and the commands there are. Returns "" when argv is fine.
std::string unknown_command(CLI::App& app, int argc, char** argv) {
  CLI::App* at = &app;
  std::string path = "m1rl";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.empty() || a[0] == '-') return {};
    auto subs = at->get_subcommands([](CLI::App*) { return true; });
    if (subs.empty()) return {};
    CLI::App* next = nullptr;
    std::string names;
    for (CLI::App* sc : subs) {
      names += (names.empty() ? "" : ", ") + sc->get_name();
      if (sc->get_name() == a) next = sc;
    }
    if (!next) return fmt::format("{}: unknown command '{}' (expected one of: {}; see {} --help)", path, a, names, path);
    path += " " + a;
    at = next;
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  // One thread unless M1_THREADS says otherwise (commands with a thread option override it).
  int threads = 1;
  if (const std::string e = check_environment(&threads); !e.empty()) {
    std::fprintf(stderr, "m1rl: %s\n", e.c_str());
    return 2;
  }
  m1::set_num_threads(threads);
  CLI::App app{"m1rl: MiniMax-M1-style models trained with asynchronous RL (CISPO)"};
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();  // --help shows every option's default
  app.set_version_flag("--version", version_text(), "print the version, commit, build type and CUDA on/off");
  int rc = 0;

  auto* model = app.add_subcommand("model", "model tools: init, info, logprobs, grad");
  model->require_subcommand(1);
  {
    auto* c = model->add_subcommand("init", "write DIR/config.json and DIR/model.safetensors");
    static std::string config, out;
    static uint64_t seed = 0;
    static bool force = false;
    c->add_option("--config", config, "config.json")->required();
    c->add_option("--seed", seed, "initialisation seed")->required()->check(unsigned_int());
    c->add_option("--out", out, "output directory (must not hold a model unless --force)")->required();
    c->add_flag("--force", force, "replace a model already in --out");
    c->callback([&] { rc = m1::cli::model_init(config, seed, out, force); });
  }
  {
    auto* c = model->add_subcommand("info", "parameters, FLOPs per token, decode state and weight bytes");
    static std::string path;
    static bool json = false;
    c->add_option("PATH", path, "a config.json or a model directory")->required();
    c->add_flag("--json", json, "print JSON");
    c->callback([&] { rc = m1::cli::model_info(path, json); });
  }
  {
    auto* c = model->add_subcommand("logprobs", "token logprobs of JSONL segments");
    static std::string dir, in, out;
    c->add_option("DIR", dir, "model directory")->required();
    c->add_option("--input", in, "JSONL, one {\"tokens\":[...]} per line")->required();
    c->add_option("--out", out, "JSONL output, one {\"logprobs\":[...]} per line")->required();
    c->callback([&] { rc = m1::cli::model_logprobs(dir, in, out); });
  }
  {
    auto* c = model->add_subcommand("grad", "gradient of an RL objective to every weight");
    static std::string dir, in, out, objective = "cispo";
    static double eps_high = 3.0;
    c->add_option("DIR", dir, "model directory")->required();
    c->add_option("--input", in, "JSONL: tokens, prompt_len, advantage[, behavior_logprobs]")->required();
    c->add_option("--out", out, "output safetensors (F32 gradients under the weights' names)")->required();
    c->add_option("--objective", objective, "cispo|cispo-mask|grpo|dapo");
    auto* e = c->add_option("--eps-high", eps_high, "upper clip epsilon (CISPO: of the IS weight)")
                  ->check(finite_in(1e-6, 1e6));
    c->callback([&, e] { rc = m1::cli::model_grad(dir, in, out, objective, eps_high, e->count() > 0); });
  }
  {
    model->description("model tools: init, info, logprobs, grad, convert");
    auto* c = model->add_subcommand("convert", "a model directory to transformers' MiniMax layout (hf) or back (release)");
    static std::string in, out, to, dtype;
    static bool force = false;
    static uint64_t shard_bytes = 5000000000ull;
    c->add_option("IN_DIR", in, "model directory (either layout)")->required();
    c->add_option("OUT_DIR", out, "output directory (must not exist or be empty)")->required();
    c->add_option("--to", to, "hf|release")->required();
    c->add_option("--dtype", dtype, "bf16|f32 (default: the input's)");
    c->add_flag("--force", force, "convert although the target layout computes a different function");
    c->add_option("--max-shard-bytes", shard_bytes, "largest shard")->check(unsigned_int())->group("");
    c->callback([&] { rc = m1::cli::model_convert(in, out, to, dtype, force, shard_bytes); });
  }
  {
    auto* c = app.add_subcommand("generate", "sample a response to a prompt");
    static std::string dir, prompt;
    static int max_new = 64, top_k = 0;
    static double temperature = 1.0, top_p = 1.0;
    static uint64_t seed = 0;
    c->add_option("DIR", dir, "model directory")->required();
    c->add_option("--prompt", prompt, "prompt text")->required();
    c->add_option("--max-new", max_new, "token budget")->check(CLI::Range(1, 1 << 20));
    c->add_option("--temperature", temperature, "0 = greedy")->check(finite_in(0.0, 100.0));
    c->add_option("--top-p", top_p, "nucleus mass")->check(finite_in(1e-6, 1.0));
    c->add_option("--top-k", top_k, "0 = off")->check(CLI::Range(0, 1 << 30));
    c->add_option("--seed", seed, "sampling seed")->check(unsigned_int());
    static std::string tokenizer, chat_template;
    c->add_option("--tokenizer", tokenizer, "tokenizer.json (default: DIR/tokenizer.json, else byte-level)");
    c->add_option("--chat-template", chat_template, "\"m1\" (MiniMax-M1's turns) or a text with {user} (default: none)");
    c->callback([&] {
      rc = m1::cli::generate(dir, prompt, max_new, temperature, top_p, top_k, seed, tokenizer, chat_template);
    });
  }
  {
    auto* bench = app.add_subcommand("bench", "benchmarks");
    bench->require_subcommand(1);
    auto* c = bench->add_subcommand("model", "training and decoding speed against this machine's ceilings");
    static std::string config;
    static bool json = false;
    static int threads = 2;
    c->add_option("--config", config, "config.json")->required();
    c->add_flag("--json", json, "print JSON");
    c->add_option("--threads", threads, "largest thread count to measure")->check(CLI::Range(1, 256));
    c->callback([&] { rc = m1::cli::bench_model(config, json, threads); });
    auto* r = bench->add_subcommand("replay", "durable replay append throughput (synced group commit)");
    static int groups = 4000;
    static bool rjson = false;
    r->add_option("--groups", groups, "groups to append")->check(CLI::Range(1, 10000000));
    r->add_flag("--json", rjson, "print JSON");
    r->callback([&] { rc = m1::cli::bench_replay(groups, rjson); });
    auto* g = bench->add_subcommand("generator",
                                    "the generator actor's tokens/s against Model::decode_step at the same batch");
    static std::string gconfig;
    static int gbatch = 32, gthreads = 1, ggroup = 8;
    static double gseconds = 10;
    static bool gjson = false;
    g->add_option("--config", gconfig, "config.json")->required();
    g->add_option("--batch", gbatch, "sequences decoded together (the generator's max_batch)")
        ->check(CLI::Range(1, 4096));
    g->add_option("--threads", gthreads, "kernel threads")->check(CLI::Range(1, 256));
    g->add_option("--group", ggroup, "requests per prompt (the sampler's group_size; the demo's is 8)")
        ->check(CLI::Range(1, 4096));
    g->add_option("--seconds", gseconds, "generation time over 3 rounds")->check(finite_in(1.5, 3600.0));
    g->add_flag("--json", gjson, "print JSON");
    g->callback([&] { rc = m1::cli::bench_generator(gconfig, gbatch, gthreads, ggroup, gseconds, gjson); });
    auto* l = bench->add_subcommand("learner", "one learner step with a group's prompt shared and unshared");
    static std::string lconfig;
    static int lgroups = 16, lgroup = 8, lprompt = 13, lresp = 7, lmb = 2, lthreads = 1, lrounds = 9;
    static bool ljson = false;
    l->add_option("--config", lconfig, "config.json")->required();
    l->add_option("--groups", lgroups, "prompts per batch (the sampler's batch_groups)")->check(CLI::Range(1, 100000));
    l->add_option("--group", lgroup, "samples per prompt (group_size)")->check(CLI::Range(1, 4096));
    l->add_option("--prompt", lprompt, "prompt tokens")->check(CLI::Range(2, 1000000));
    l->add_option("--response", lresp, "mean response tokens")->check(CLI::Range(1, 1000000));
    l->add_option("--minibatches", lmb, "optimizer steps per batch")->check(CLI::Range(1, 1024));
    l->add_option("--threads", lthreads, "kernel threads")->check(CLI::Range(1, 256));
    l->add_option("--rounds", lrounds, "timed steps of each kind")->check(CLI::Range(1, 10000));
    l->add_flag("--json", ljson, "print JSON");
    l->callback([&] {
      rc = m1::cli::bench_learner(lconfig, lgroups, lgroup, lprompt, lresp, lmb, lthreads, lrounds, ljson);
    });
    auto* tk = bench->add_subcommand("tokenizer", "tokenizer encoding MB/s on one core, ByteTokenizer's beside it");
    static std::string tfile, tcorpus, tsave;
    static double tmb = 10;
    static int tmerges = 4000;
    static bool tjson = false;
    tk->add_option("--tokenizer", tfile, "tokenizer.json (default: train one on --corpus)");
    tk->add_option("--mb", tmb, "megabytes of text to encode")->check(finite_in(0.001, 10000));
    tk->add_option("--merges", tmerges, "merges of the tokenizer trained when --tokenizer is not given")
        ->check(CLI::Range(1, 1000000));
    tk->add_option("--corpus", tcorpus, "English text (default: /usr/share/common-licenses/*)");
    tk->add_option("--save-tokenizer", tsave, "write the trained tokenizer.json here");
    tk->add_flag("--json", tjson, "print JSON");
    tk->callback([&] { rc = m1::cli::bench_tokenizer(tfile, tmb, tmerges, tcorpus, tsave, tjson); });
  }
  {
    auto* c = app.add_subcommand("tokenize", "stdin lines of text to JSON arrays of token ids, or back (--decode)");
    static std::string file;
    static bool decode = false;
    c->add_option("--tokenizer", file, "tokenizer.json (default: the built-in byte-level tokenizer)");
    c->add_flag("--decode", decode, "read JSON arrays of ids, print each text as a JSON string");
    c->callback([&] { rc = m1::cli::tokenize(file, decode); });
  }
  {
    auto* c = app.add_subcommand("sft", "supervised fine-tuning on the built-in tasks");
    static std::string config;
    c->add_option("CONFIG", config, "SFT TOML config")->required();
    c->callback([&] { rc = m1::cli::sft(config); });
  }
  {
    auto* c = app.add_subcommand("run", "the whole RL pipeline in one process (SFT stage, then async RL)");
    static std::string config, run_dir;
    static bool allow_change = false;
    c->add_option("CONFIG", config, "run TOML config (e.g. configs/demo.toml)")->required();
    c->add_option("--run-dir", run_dir, "run directory (overrides run.dir)");
    c->add_flag("--allow-config-change", allow_change,
                "resume a run directory although its model or task set changed (recorded in events.log)");
    c->callback([&] { rc = m1::cli::run(config, run_dir, allow_change); });
  }
  {
    auto* cfg = app.add_subcommand("config", "inspect a config file");
    cfg->require_subcommand(1);
    auto* c = cfg->add_subcommand("show", "print a run (or SFT) config resolved: every default filled in, as TOML");
    static std::string config, run_dir;
    c->add_option("CONFIG", config, "run TOML config (e.g. configs/demo.toml); an SFT config if it is not one")
        ->required();
    c->add_option("--run-dir", run_dir, "run directory (overrides run.dir, as m1rl run --run-dir does)");
    c->callback([&] { rc = m1::cli::config_show(config, run_dir); });
  }
  {
    auto* rp = app.add_subcommand("replay", "inspect the replay buffer of a live or finished run (read-only)");
    rp->require_subcommand(1);
    static std::string run, out;
    static bool json = false, follow = false, skip_damaged = false;
    static m1::cli::ReplayLsArgs ls;
    static uint64_t group = 0;
    static int tail_n = 20;
    auto* st = rp->add_subcommand("stats", "counts by status and drop reason, staleness, reward and length by task");
    st->add_option("RUN", run, "run directory")->required();
    st->add_flag("--json", json, "print JSON");
    st->callback([&] { rc = m1::cli::replay_stats(run, json); });
    auto* l = rp->add_subcommand("ls", "list groups");
    l->add_option("RUN", run, "run directory")->required();
    l->add_option("--status", ls.status, "pending|consumed|dropped|quarantined");
    l->add_option("--task", ls.task, "only this task (\"\" = all)");
    l->add_option("--min-version", ls.min_version, "only groups whose newest token version is >= this")
        ->check(unsigned_int());
    l->add_option("--max-version", ls.max_version, "only groups whose oldest token version is <= this")
        ->check(unsigned_int());
    l->add_option("--min-reward", ls.min_reward, "only groups whose mean shaped reward is >= this")
        ->check(finite_in(-1e30, 1e30));
    l->add_option("--max-reward", ls.max_reward, "only groups whose mean shaped reward is <= this")
        ->check(finite_in(-1e30, 1e30));
    l->add_option("--limit", ls.limit, "at most this many groups (0 = all)")->check(CLI::Range(0, 100000000));
    l->add_flag("--json", json, "print JSON");
    l->callback([&] { rc = m1::cli::replay_ls(run, ls, json); });
    auto* sh = rp->add_subcommand("show", "every rollout of one group, decoded");
    sh->add_option("RUN", run, "run directory")->required();
    sh->add_option("GROUP", group, "group id")->required()->check(unsigned_int());
    sh->add_flag("--json", json, "print JSON");
    sh->callback([&] { rc = m1::cli::replay_show(run, group, json); });
    auto* tl = rp->add_subcommand("tail", "the newest groups; --follow for new ones as they arrive");
    tl->add_option("RUN", run, "run directory")->required();
    tl->add_option("-n", tail_n, "how many to show first")->check(CLI::Range(0, 100000000));
    tl->add_flag("--follow,-f", follow, "keep printing new groups as they arrive (Ctrl-C ends)");
    tl->add_flag("--json", json, "print JSON lines");
    tl->callback([&] { rc = m1::cli::replay_tail(run, json, follow, tail_n); });
    auto* ex = rp->add_subcommand("export", "every group as JSONL");
    ex->add_option("RUN", run, "run directory")->required();
    ex->add_option("--out", out, "output file (default stdout)");
    ex->add_flag("--json", json, "JSONL (the only format; accepted for symmetry)");
    ex->add_flag("--skip-damaged", skip_damaged,
                 "export the intact groups of a damaged store; count and name the damaged ones on stderr");
    ex->callback([&] { rc = m1::cli::replay_export(run, out, skip_damaged); });
    auto* ck = rp->add_subcommand("check", "RocksDB's own checksums, then every record decoded; exit 1 names damage");
    ck->add_option("RUN", run, "run directory")->required();
    ck->add_flag("--json", json, "print JSON");
    ck->callback([&] { rc = m1::cli::replay_check(run, json); });
  }
  {
    auto* c = app.add_subcommand("sim", "deterministic simulation of the pipeline on simulated nodes, with seeded faults");
    static uint64_t seed = 1;
    static std::string seeds, faults = "default", plant = "none", work_dir;
    static int nodes = 3, steps = 6;
    c->add_option("--seed", seed, "the seed: faults, model and data all follow from it")->check(unsigned_int());
    c->add_option("--seeds", seeds, "a range A..B of seeds, one line each (overrides --seed)");
    c->add_option("--nodes", nodes, "simulated nodes: node 1 (replay, sampler, learner) + one generator and judge each")
        ->check(CLI::Range(2, 64));
    c->add_option("--steps", steps, "learner steps to reach")->check(CLI::Range(1, 1000));
    c->add_option("--faults", faults,
                  "none, default, or key=value,...: drop=P, dup=P, delay=MIN..MAXms, crashes=N, partitions=N, "
                  "commit_failure=P, learner_crash=P, slow=0|1");
    c->add_option("--plant", plant, "test only: run with a deliberate bug (dedupe, fencing, commit) to show the "
                                    "invariants catch it");
    c->add_option("--work-dir", work_dir, "keep the replay store and logs here (default: a temp dir, removed)");
    c->callback([&] { rc = m1::cli::sim(seed, seeds, nodes, steps, faults, plant, work_dir); });
  }
  {
    auto* c = app.add_subcommand("eval", "held-out accuracy of a model on built-in tasks");
    static std::string dir, tasks = "add";
    static int min_d = 1, max_d = 2, n = 100, max_new = 24;
    static uint64_t seed = 1;
    c->add_option("DIR", dir, "model directory")->required();
    c->add_option("--tasks", tasks, "comma-separated task names (add, sort, add_steps)");
    c->add_option("--min-difficulty", min_d, "smallest difficulty drawn (digits)")->check(CLI::Range(1, 100));
    c->add_option("--max-difficulty", max_d, "largest difficulty drawn (>= --min-difficulty)")->check(CLI::Range(1, 100));
    c->add_option("--examples", n, "held-out examples")->check(CLI::Range(1, 1000000));
    c->add_option("--seed", seed, "held-out set seed")->check(unsigned_int());
    c->add_option("--max-new", max_new, "token budget per answer")->check(CLI::Range(1, 1 << 20));
    static std::string tokenizer, chat_template;
    c->add_option("--tokenizer", tokenizer, "tokenizer.json (default: DIR/tokenizer.json, else byte-level)");
    c->add_option("--chat-template", chat_template, "\"m1\" (MiniMax-M1's turns) or a text with {user} (default: none)");
    c->callback([&] {
      if (tasks.find_first_not_of(", ") == std::string::npos) {
        std::fprintf(stderr, "m1rl eval: --tasks '%s': expected at least one task (add, sort, add_steps)\n", tasks.c_str());
        rc = 2;
        return;
      }
      if (max_d < min_d) {
        std::fprintf(stderr, "m1rl eval: --max-difficulty %d is less than --min-difficulty %d\n", max_d, min_d);
        rc = 2;
        return;
      }
      rc = m1::cli::eval(dir, tasks, min_d, max_d, n, seed, max_new, tokenizer, chat_template);
    });
  }
  if (const std::string u = unknown_command(app, argc, argv); !u.empty()) {
    std::fprintf(stderr, "%s\n", u.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "m1rl: error: out of memory (the model or data asked for more than this machine has)\n");
    return 1;
  } catch (const std::exception& e) {  // a bug, not bad input: say so rather than abort
    std::fprintf(stderr, "m1rl: internal error: %s\n", e.what());
    return 1;
  }
  return rc;
}
