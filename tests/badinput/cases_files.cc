// Rows on the command line and on the files a command reads: CLI flags and arguments, model
// folders (config.json), safetensors files, prompts JSONL (sampler.prompts) and tokens JSONL
// (model logprobs / model grad). {shared} is the model fixture (cases.h).
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "tests/badinput/cases.h"

namespace m1::badinput {

namespace {

using json = nlohmann::json;

Case cli(std::string name, std::string args, Expect e, std::vector<std::string> words) {
  Case c;
  c.name = std::move(name);
  c.kind = Kind::kCli;
  c.args = std::move(args);
  c.expect = e;
  c.words = std::move(words);
  return c;
}

const char* kGen = "generate {shared}/model --prompt 1+1= --max-new 2 ";
const char* kTiny = "{src}/configs/models/tiny.json";

// A copy of the fixture model and a valid tokens file; `model logprobs` must fail without
// leaving an output behind.
Case on_model(std::string name, Kind kind, std::vector<std::string> words) {
  Case c;
  c.name = std::move(name);
  c.kind = kind;
  c.files = {{"model", "@copy:{shared}/model"}, {"in.jsonl", "{\"tokens\":[256,49,43,49,61]}\n"}};
  c.args = "model logprobs {dir}/model --input {dir}/in.jsonl --out {dir}/out.jsonl";
  c.expect = Expect::kError;
  c.words = std::move(words);
  c.post = {absent("{dir}/out.jsonl"), only_entries("{dir}", {"model", "in.jsonl"})};
  return c;
}

std::string tiny_json_with(const std::function<void(json&)>& edit) {
  json j = json::parse(src_file("configs/models/tiny.json"));
  edit(j);
  return j.dump(2);
}

Case bad_model_config(std::string name, std::string key, const std::function<void(json&)>& edit) {
  Case c = on_model("config.json: " + name, Kind::kModelDir, {"{dir}/model", key});
  c.files.push_back({"model/config.json", tiny_json_with(edit)});
  return c;
}

Case bad_safetensors(std::string name, Prepare p) {
  Case c = on_model("model.safetensors: " + name, Kind::kSafetensors, {"{dir}/model/model.safetensors"});
  c.prepare.push_back(std::move(p));
  return c;
}

// Sets the 8-byte header length of PATH to the file's size + EXTRA (or to VALUE when absolute).
Prepare header_length(const std::string& path, uint64_t value, bool relative_to_size) {
  return {"header length", [path, value, relative_to_size](Ctx& c) {
            const std::string p = c.sub(path);
            std::string s = read_all(p);
            const uint64_t n = relative_to_size ? uint64_t(s.size()) + value : value;
            std::memcpy(s.data(), &n, 8);
            write_all(p, s);
            c.notes.push_back(fmt::format("{}: header length set to {}", p, n));
          }};
}

const char* kEmbed = "model.embed_tokens.weight";  // (V, D) = (263, 32) in the tiny model

Case tokens(std::string name, const std::string& line2, std::vector<std::string> words = {"{dir}/in.jsonl:2"}) {
  Case c = on_model(std::move(name), Kind::kTokensJsonl, std::move(words));
  c.files[1].content = "{\"tokens\":[256,49,43,49,61]}\n" + line2 + "\n";
  return c;
}

Case grad(std::string name, const std::string& line2, std::vector<std::string> words) {
  Case c = on_model(std::move(name), Kind::kTokensJsonl, std::move(words));
  c.files[1].content = "{\"tokens\":[256,49,43,49,61,50,257],\"prompt_len\":5,\"advantage\":1.0}\n" + line2 + "\n";
  c.args = "model grad {dir}/model --input {dir}/in.jsonl --out {dir}/g.safetensors";
  c.post = {absent("{dir}/g.safetensors"), only_entries("{dir}", {"model", "in.jsonl"})};
  return c;
}

Case prompts(std::string name, const std::string& text, std::vector<std::string> words) {
  Case c;
  c.name = std::move(name);
  c.kind = Kind::kPromptsJsonl;
  c.files = run_files(base_run().set("sampler.prompts", "\"prompts.jsonl\""));
  c.files.push_back({"prompts.jsonl", text});
  c.args = "run {dir}/run.toml";
  c.words = std::move(words);
  c.post = {absent("{dir}/r")};
  return c;
}

}  // namespace

std::vector<Case> cli_cases() {
  const std::string gen = kGen, tiny = kTiny;
  std::vector<Case> v = {
      cli("--version", "--version", Expect::kOk, {"m1rl", "cuda"}),
      cli("unknown subcommand", "frobnicate", Expect::kUsage, {"frobnicate"}),
      cli("unknown model verb", "model frobnicate", Expect::kUsage, {"frobnicate"}),
      cli("unknown replay verb", "replay frobnicate {dir}", Expect::kUsage, {"frobnicate"}),
      cli("no arguments", "", Expect::kUsage, {}),
      cli("unknown flag", gen + "--frob", Expect::kUsage, {"--frob"}),
      cli("generate --temperature nan", gen + "--temperature nan", Expect::kUsage, {"--temperature"}),
      cli("generate --temperature inf", gen + "--temperature inf", Expect::kUsage, {"--temperature"}),
      cli("generate --temperature -1", gen + "--temperature -1", Expect::kUsage, {"--temperature"}),
      cli("generate --temperature 1e309", gen + "--temperature 1e309", Expect::kUsage, {"--temperature"}),
      cli("generate --temperature abc", gen + "--temperature abc", Expect::kUsage, {"--temperature"}),
      cli("generate --top-p nan", gen + "--top-p nan", Expect::kUsage, {"--top-p"}),
      cli("generate --top-p 0", gen + "--top-p 0", Expect::kUsage, {"--top-p"}),
      cli("generate --top-p 1.5", gen + "--top-p 1.5", Expect::kUsage, {"--top-p"}),
      cli("generate --max-new 0", "generate {shared}/model --prompt x --max-new 0", Expect::kUsage, {"--max-new"}),
      cli("generate --max-new 2^64", "generate {shared}/model --prompt x --max-new 99999999999999999999", Expect::kUsage,
          {"--max-new"}),
      cli("generate --top-k -1", gen + "--top-k -1", Expect::kUsage, {"--top-k"}),
      cli("generate --seed -1", gen + "--seed -1", Expect::kUsage, {"--seed"}),
      cli("generate --seed abc", gen + "--seed abc", Expect::kUsage, {"--seed"}),
      cli("generate without DIR", "generate", Expect::kUsage, {"DIR"}),
      cli("generate without --prompt", "generate {shared}/model", Expect::kUsage, {"--prompt"}),
      cli("eval --min-difficulty > --max-difficulty", "eval {shared}/model --min-difficulty 5 --max-difficulty 2",
          Expect::kUsageOrError, {"--min-difficulty"}),
      cli("eval --min-difficulty 0", "eval {shared}/model --min-difficulty 0", Expect::kUsage, {"--min-difficulty"}),
      cli("eval --max-difficulty 101", "eval {shared}/model --max-difficulty 101", Expect::kUsage, {"--max-difficulty"}),
      cli("eval --examples 0", "eval {shared}/model --examples 0", Expect::kUsage, {"--examples"}),
      cli("eval --tasks with an unknown task", "eval {shared}/model --tasks add,mul --examples 2", Expect::kUsageOrError,
          {"mul"}),
      cli("eval --tasks empty", "eval {shared}/model --tasks '' --examples 2", Expect::kUsageOrError, {"--tasks"}),
      cli("model init without --config", "model init --seed 1 --out {dir}/m", Expect::kUsage, {"--config"}),
      cli("model init --seed -1", "model init --config " + tiny + " --seed -1 --out {dir}/m", Expect::kUsage, {"--seed"}),
      cli("model init --config missing", "model init --config {dir}/nope.json --seed 1 --out {dir}/m", Expect::kError,
          {"{dir}/nope.json"}),
      cli("model info on a missing file", "model info {dir}/nope.json", Expect::kError, {"{dir}/nope.json"}),
      cli("model logprobs without --out", "model logprobs {shared}/model --input {dir}/in.jsonl", Expect::kUsage,
          {"--out"}),
      cli("model grad --objective ppo", "model grad {shared}/model --input {dir}/in.jsonl --out {dir}/g --objective ppo",
          Expect::kUsageOrError, {"ppo"}),
      cli("model grad --eps-high 0", "model grad {shared}/model --input {dir}/in.jsonl --out {dir}/g --eps-high 0",
          Expect::kUsage, {"--eps-high"}),
      cli("model grad --eps-high nan", "model grad {shared}/model --input {dir}/in.jsonl --out {dir}/g --eps-high nan",
          Expect::kUsage, {"--eps-high"}),
      cli("run without CONFIG", "run", Expect::kUsage, {"CONFIG"}),
      cli("sft without CONFIG", "sft", Expect::kUsage, {"CONFIG"}),
      cli("run with an extra argument", "run {dir}/a.toml {dir}/b.toml", Expect::kUsage, {"b.toml"}),
      cli("replay stats on a missing path", "replay stats /nonexistent", Expect::kError, {"/nonexistent"}),
      cli("replay show without GROUP", "replay show {dir}", Expect::kUsage, {"GROUP"}),
      cli("replay ls --limit -5", "replay ls {dir} --limit -5", Expect::kUsage, {"--limit"}),
      cli("replay tail -n -1", "replay tail {dir} -n -1", Expect::kUsageOrError, {"-n"}),
      cli("bench generator --seconds 0", "bench generator --config " + tiny + " --seconds 0", Expect::kUsage,
          {"--seconds"}),
      cli("bench generator --seconds nan", "bench generator --config " + tiny + " --seconds nan", Expect::kUsage,
          {"--seconds"}),
      cli("bench generator --batch 0", "bench generator --config " + tiny + " --batch 0", Expect::kUsage, {"--batch"}),
      cli("bench model --threads 0", "bench model --config " + tiny + " --threads 0", Expect::kUsage, {"--threads"}),
      cli("bench model without --config", "bench model", Expect::kUsage, {"--config"}),
      cli("bench replay --groups 0", "bench replay --groups 0", Expect::kUsage, {"--groups"}),
      cli("bench learner --prompt 1", "bench learner --config " + tiny + " --prompt 1", Expect::kUsage, {"--prompt"}),
      cli("bench learner --minibatches 0", "bench learner --config " + tiny + " --minibatches 0", Expect::kUsage,
          {"--minibatches"}),
  };
  // M1_THREADS is read at start-up by every command. 1000 is past every thread option's 256 (100000
  // exhausts the machine's process ids before m1rl aborts: not a row to run on a shared machine).
  for (const char* n : {"abc", "0", "-3", "1000"}) {
    Case c = cli(fmt::format("M1_THREADS={}", n), "model info " + tiny, Expect::kUsageOrError, {"M1_THREADS"});
    c.env = fmt::format("M1_THREADS={}", n);
    v.push_back(std::move(c));
  }
  {
    Case c = cli("M1_KERNELS=bogus", gen, Expect::kUsageOrError, {"M1_KERNELS"});
    c.env = "M1_KERNELS=bogus";
    v.push_back(std::move(c));
  }
  // Folders nothing can be written in (/proc refuses new entries): errors naming the path.
  v.push_back(cli("model init --out where nothing can be written",
                  "model init --config " + tiny + " --seed 1 --out /proc/m1rl-badinput/m", Expect::kError,
                  {"/proc/m1rl-badinput"}));
  v.push_back(cli("model logprobs --out where nothing can be written",
                  "model logprobs {shared}/model --input {dir}/in.jsonl --out /proc/m1rl-badinput/out.jsonl",
                  Expect::kError, {"/proc/m1rl-badinput"}));
  v.back().files = {{"in.jsonl", "{\"tokens\":[256,49,43,49,61]}\n"}};
  v.push_back(cli("replay tail -f on a folder that is not a run", "replay tail {dir} -f", Expect::kError, {"{dir}"}));
  v.back().timeout_s = 30;
  {
    Case c = cli("model init over an existing model is refused",
                 "model init --config " + tiny + " --seed 1 --out {dir}/model", Expect::kError, {"--force"});
    c.files = {{"model", "@copy:{shared}/model"}};
    c.post = {unchanged("{dir}/model")};
    v.push_back(std::move(c));
  }
  {
    Case c = cli("model init --force replaces a model", "model init --config " + tiny + " --seed 1 --out {dir}/model --force",
                 Expect::kOk, {});
    c.files = {{"model", "@copy:{shared}/model"}};
    c.post = {present("{dir}/model/model.safetensors"), present("{dir}/model/config.json")};
    v.push_back(std::move(c));
  }
  {
    Case c = cli("model init --out is a file", "model init --config " + tiny + " --seed 1 --out {dir}/afile",
                 Expect::kError, {"{dir}/afile"});
    c.files = {{"afile", "x"}};
    c.post = {unchanged("{dir}/afile")};
    v.push_back(std::move(c));
  }
  {
    Case c = cli("model info on a config that is not JSON", "model info {dir}/bad.json", Expect::kError,
                 {"{dir}/bad.json"});
    c.files = {{"bad.json", "{\"hidden_size\": "}};
    v.push_back(std::move(c));
  }
  return v;
}

std::vector<Case> model_dir_cases() {
  std::vector<Case> v;
  {
    Case c = on_model("no config.json", Kind::kModelDir, {"{dir}/model", "config.json"});
    c.prepare.push_back(remove_path("{dir}/model/config.json"));
    v.push_back(std::move(c));
  }
  {
    Case c = on_model("config.json not JSON", Kind::kModelDir, {"{dir}/model/config.json"});
    c.files.push_back({"model/config.json", "{\"hidden_size\": 32,,}"});
    v.push_back(std::move(c));
  }
  {
    Case c = on_model("config.json empty", Kind::kModelDir, {"{dir}/model/config.json"});
    c.files.push_back({"model/config.json", ""});
    v.push_back(std::move(c));
  }
  {
    Case c = on_model("config.json an array", Kind::kModelDir, {"{dir}/model/config.json"});
    c.files.push_back({"model/config.json", "[1, 2]"});
    v.push_back(std::move(c));
  }
  {
    Case c = on_model("config.json is a folder", Kind::kModelDir, {"{dir}/model/config.json"});
    c.prepare.push_back(make_folder("{dir}/model/config.json"));
    v.push_back(std::move(c));
  }
  v.push_back(bad_model_config("hidden_size a string", "hidden_size", [](json& j) { j["hidden_size"] = "32"; }));
  v.push_back(bad_model_config("hidden_size 0", "hidden_size", [](json& j) { j["hidden_size"] = 0; }));
  v.push_back(bad_model_config("hidden_size -32", "hidden_size", [](json& j) { j["hidden_size"] = -32; }));
  v.push_back(bad_model_config("hidden_size 1e300", "hidden_size", [](json& j) { j["hidden_size"] = 1e300; }));
  v.push_back(bad_model_config("hidden_size 2^40", "hidden_size", [](json& j) { j["hidden_size"] = int64_t(1) << 40; }));
  v.push_back(bad_model_config("hidden_size missing", "hidden_size", [](json& j) { j.erase("hidden_size"); }));
  v.push_back(bad_model_config("num_hidden_layers 0", "num_hidden_layers", [](json& j) { j["num_hidden_layers"] = 0; }));
  v.push_back(bad_model_config("attn_type_list too long", "attn_type_list",
                               [](json& j) { j["attn_type_list"] = {0, 1, 0}; }));
  v.push_back(bad_model_config("attn_type_list entry 7", "attn_type_list", [](json& j) { j["attn_type_list"] = {0, 7}; }));
  v.push_back(bad_model_config("num_key_value_heads 3", "num_key_value_heads",
                               [](json& j) { j["num_key_value_heads"] = 3; }));
  v.push_back(bad_model_config("num_experts_per_tok 5 of 4", "num_experts_per_tok",
                               [](json& j) { j["num_experts_per_tok"] = 5; }));
  v.push_back(bad_model_config("vocab_size 0", "vocab_size", [](json& j) { j["vocab_size"] = 0; }));
  v.push_back(bad_model_config("head_dim 0", "head_dim", [](json& j) { j["head_dim"] = 0; }));
  v.push_back(bad_model_config("rotary_dim 10 > head_dim", "rotary_dim", [](json& j) { j["rotary_dim"] = 10; }));
  v.push_back(bad_model_config("rms_norm_eps -1", "rms_norm_eps", [](json& j) { j["rms_norm_eps"] = -1.0; }));
  v.push_back(bad_model_config("block_size 0", "block_size", [](json& j) { j["block_size"] = 0; }));
  {
    Case c = on_model("model folder does not exist", Kind::kModelDir, {"{dir}/nomodel"});
    c.args = "model logprobs {dir}/nomodel --input {dir}/in.jsonl --out {dir}/out.jsonl";
    v.push_back(std::move(c));
  }
  {
    Case c = on_model("model folder is a file", Kind::kModelDir, {"{dir}/in.jsonl"});
    c.args = "model logprobs {dir}/in.jsonl --input {dir}/in.jsonl --out {dir}/out.jsonl";
    v.push_back(std::move(c));
  }
  {
    Case c = on_model("no model.safetensors", Kind::kModelDir, {"{dir}/model", "model.safetensors"});
    c.prepare.push_back(remove_path("{dir}/model/model.safetensors"));
    v.push_back(std::move(c));
  }
  {
    Case c = on_model("generate on a model folder without config.json", Kind::kModelDir, {"{dir}/model"});
    c.prepare.push_back(remove_path("{dir}/model/config.json"));
    c.args = "generate {dir}/model --prompt 1+1= --max-new 2";
    v.push_back(std::move(c));
  }
  {
    Case c = on_model("eval on a missing model folder", Kind::kModelDir, {"{dir}/nomodel"});
    c.args = "eval {dir}/nomodel --examples 2";
    v.push_back(std::move(c));
  }
  {  // 64 layers of 64 experts of 65536 x 65536: petabytes. A clear error, never std::bad_alloc.
    Case c;
    c.name = "model init on a config too large to allocate";
    c.kind = Kind::kModelDir;
    c.files = {{"huge.json", tiny_json_with([](json& j) {
                  j["hidden_size"] = 65536;
                  j["intermediate_size"] = 65536;
                  j["num_attention_heads"] = 512;
                  j["num_key_value_heads"] = 512;
                  j["head_dim"] = 128;
                  j["rotary_dim"] = 64;
                  j["num_local_experts"] = 64;
                  j["num_hidden_layers"] = 64;
                  j["attn_type_list"] = std::vector<int>(64, 0);
                })}};
    c.args = "model init --config {dir}/huge.json --seed 1 --out {dir}/m";
    c.expect = Expect::kError;
    c.words = {"{dir}/huge.json"};
    c.post = {absent("{dir}/m")};
    v.push_back(std::move(c));
  }
  return v;
}

std::vector<Case> safetensors_cases() {
  const std::string st = "{dir}/model/model.safetensors";
  auto tensor = [](json& h, const char* name) -> json& { return h[name]; };
  std::vector<Case> v = {
      bad_safetensors("cut in half", truncate_to(st, 0.5)),
      bad_safetensors("cut to 4 bytes", truncate_to(st, 4.0 / 204728)),
      bad_safetensors("empty", truncate_to(st, 0)),
      bad_safetensors("header length past the end", header_length(st, 100, true)),
      bad_safetensors("header length 2^64-1", header_length(st, ~uint64_t(0), false)),
      bad_safetensors("header length 0", header_length(st, 0, false)),
      bad_safetensors("header not JSON", overwrite_at(st, 8.0 / 204728, "!!!!!!!!")),
      bad_safetensors("header a JSON array", edit_safetensors_header(st, "header = []", [](json& h) { h = json::array(); })),
      bad_safetensors("a tensor's shape transposed", edit_safetensors_header(st, "embed shape [32, 263]", [&](json& h) {
                        tensor(h, kEmbed)["shape"] = {32, 263};
                      })),
      bad_safetensors("a tensor's shape with an extra axis",
                      edit_safetensors_header(st, "embed shape [1, 263, 32]",
                                              [&](json& h) { tensor(h, kEmbed)["shape"] = {1, 263, 32}; })),

      bad_safetensors("dtype F64", edit_safetensors_header(st, "embed F64", [&](json& h) { tensor(h, kEmbed)["dtype"] = "F64"; })),
      bad_safetensors("dtype Q4", edit_safetensors_header(st, "embed Q4", [&](json& h) { tensor(h, kEmbed)["dtype"] = "Q4"; })),
      bad_safetensors("dtype a number", edit_safetensors_header(st, "embed dtype 5", [&](json& h) { tensor(h, kEmbed)["dtype"] = 5; })),
      bad_safetensors("data_offsets past the end",
                      edit_safetensors_header(st, "embed end + 2^40",
                                              [&](json& h) { tensor(h, kEmbed)["data_offsets"] = {0, int64_t(1) << 40}; })),
      bad_safetensors("data_offsets reversed", edit_safetensors_header(st, "embed [33664, 0]", [&](json& h) {
                        tensor(h, kEmbed)["data_offsets"] = {33664, 0};
                      })),
      bad_safetensors("data_offsets one element short", edit_safetensors_header(st, "embed [0, 33660]", [&](json& h) {
                        tensor(h, kEmbed)["data_offsets"] = {0, 33660};
                      })),
      bad_safetensors("data_offsets negative", edit_safetensors_header(st, "embed [-8, 33656]", [&](json& h) {
                        tensor(h, kEmbed)["data_offsets"] = {-8, 33656};
                      })),
      bad_safetensors("shape whose element count overflows", edit_safetensors_header(st, "embed [2^32, 2^32, 2^32]", [&](json& h) {
                        const int64_t b = int64_t(1) << 32;
                        tensor(h, kEmbed)["shape"] = {b, b, b};
                      })),
      bad_safetensors("shape negative", edit_safetensors_header(st, "embed [-263, -32]", [&](json& h) {
                        tensor(h, kEmbed)["shape"] = {-263, -32};
                      })),
      bad_safetensors("shape a string", edit_safetensors_header(st, "embed shape \"263x32\"", [&](json& h) {
                        tensor(h, kEmbed)["shape"] = "263x32";
                      })),
  };
  {  // the loader reads a folder (maybe sharded): naming the folder and the tensor is enough
    Case c = bad_safetensors("a tensor missing", edit_safetensors_header(st, "embed removed", [](json& h) { h.erase(kEmbed); }));
    c.words = {"{dir}/model", kEmbed};
    v.push_back(std::move(c));
  }
  {
    Case c = on_model("model.safetensors: weights of another config", Kind::kSafetensors, {"{dir}/model"});
    c.files.push_back({"model/model.safetensors", "@copy:{shared}/wide/model.safetensors"});
    v.push_back(std::move(c));
  }
  {
    Case c = bad_safetensors("cut in half, read by generate", truncate_to(st, 0.5));
    c.args = "generate {dir}/model --prompt 1+1= --max-new 2";
    v.push_back(std::move(c));
  }
  {
    Case c = bad_safetensors("cut in half, read by model grad", truncate_to(st, 0.5));
    c.files[1].content = "{\"tokens\":[256,49,43,49,61,50,257],\"prompt_len\":5,\"advantage\":1.0}\n";
    c.args = "model grad {dir}/model --input {dir}/in.jsonl --out {dir}/g.safetensors";
    c.post = {absent("{dir}/g.safetensors")};
    v.push_back(std::move(c));
  }
  {
    Case c = bad_safetensors("cut in half, read by eval", truncate_to(st, 0.5));
    c.args = "eval {dir}/model --examples 2";
    v.push_back(std::move(c));
  }
  return v;
}

std::vector<Case> prompts_cases() {
  const std::string ok = "{\"prompt\":\"1+1=\",\"answer\":\"2\"}\n";
  const std::vector<std::string> l1 = {"{dir}/prompts.jsonl:1"}, l2 = {"{dir}/prompts.jsonl:2"};
  std::vector<Case> v = {
      prompts("line 2 not JSON", ok + "{\"prompt\": \"2+2=\", \n", l2),
      prompts("line 2 without answer", ok + "{\"prompt\":\"2+2=\"}\n", {"{dir}/prompts.jsonl:2", "answer"}),
      prompts("line 2 without prompt", ok + "{\"answer\":\"4\"}\n", {"{dir}/prompts.jsonl:2", "prompt"}),
      prompts("empty file", "", {"{dir}/prompts.jsonl"}),
      prompts("only blank lines", "\n  \n\n", {"{dir}/prompts.jsonl"}),
      prompts("line 1 a JSON array", "[\"1+1=\", \"2\"]\n", l1),
      prompts("empty prompt", "{\"prompt\":\"\",\"answer\":\"2\"}\n", {"{dir}/prompts.jsonl:1", "prompt"}),
      prompts("answer a number", ok + "{\"prompt\":\"2+2=\",\"answer\":4}\n", {"{dir}/prompts.jsonl:2", "answer"}),
      prompts("answer blank", "{\"prompt\":\"1+1=\",\"answer\":\"  \"}\n", {"{dir}/prompts.jsonl:1", "answer"}),
      prompts("task a number", "{\"prompt\":\"1+1=\",\"answer\":\"2\",\"task\":3}\n", {"{dir}/prompts.jsonl:1", "task"}),
      prompts("invalid UTF-8", "{\"prompt\":\"1+1=\xff\xfe\",\"answer\":\"2\"}\n", l1),
      prompts("a NUL byte in line 2", ok + std::string("{\"prompt\":\"2+\0=\",\"answer\":\"4\"}\n", 31), l2),
      prompts("trailing garbage on line 3", ok + ok + "{\"prompt\":\"3+3=\",\"answer\":\"6\"} xyz\n",
              {"{dir}/prompts.jsonl:3"}),
      prompts("answer longer than 64 KiB", "{\"prompt\":\"1+1=\",\"answer\":\"" + std::string(70000, '7') + "\"}\n",
              {"{dir}/prompts.jsonl:1", "answer"}),
  };
  {
    Case c = prompts("missing file", "", {"{dir}/prompts.jsonl"});
    c.files.pop_back();
    v.push_back(std::move(c));
  }
  {
    Case c = prompts("the path is a folder", "", {"{dir}/prompts.jsonl"});
    c.files.back() = {"prompts.jsonl/x", "x"};
    v.push_back(std::move(c));
  }
  return v;
}

std::vector<Case> tokens_cases() {
  std::vector<Case> v = {
      tokens("token id = vocab_size (263)", "{\"tokens\":[256,49,263]}"),
      tokens("token id 2^31", "{\"tokens\":[256,2147483648]}"),
      tokens("token id past uint64", "{\"tokens\":[256,99999999999999999999]}"),
      tokens("negative token id", "{\"tokens\":[256,-1,49]}"),
      tokens("non-integer token id", "{\"tokens\":[256,49.5]}"),
      tokens("token id a string", "{\"tokens\":[256,\"49\"]}"),
      tokens("token id true", "{\"tokens\":[256,true]}"),
      tokens("token id null", "{\"tokens\":[256,null]}"),
      tokens("nested token array", "{\"tokens\":[[256,49]]}"),
      tokens("empty tokens array", "{\"tokens\":[]}"),
      tokens("tokens not an array", "{\"tokens\":5}"),
      tokens("no tokens key", "{\"tokenz\":[256,49]}"),
      tokens("malformed line", "{\"tokens\":[256,49"),
      tokens("line is an array", "[256,49]"),
      grad("grad: prompt_len missing", "{\"tokens\":[256,49,50],\"advantage\":1.0}", {"{dir}/in.jsonl:2", "prompt_len"}),
      grad("grad: prompt_len 0", "{\"tokens\":[256,49,50],\"prompt_len\":0,\"advantage\":1.0}",
           {"{dir}/in.jsonl:2", "prompt_len"}),
      grad("grad: prompt_len = length", "{\"tokens\":[256,49,50],\"prompt_len\":3,\"advantage\":1.0}",
           {"{dir}/in.jsonl:2", "prompt_len"}),
      grad("grad: prompt_len a string", "{\"tokens\":[256,49,50],\"prompt_len\":\"1\",\"advantage\":1.0}",
           {"{dir}/in.jsonl:2", "prompt_len"}),
      grad("grad: advantage missing", "{\"tokens\":[256,49,50],\"prompt_len\":1}", {"{dir}/in.jsonl:2", "advantage"}),
      grad("grad: advantage a string", "{\"tokens\":[256,49,50],\"prompt_len\":1,\"advantage\":\"1\"}",
           {"{dir}/in.jsonl:2", "advantage"}),
      grad("grad: advantage 1e999", "{\"tokens\":[256,49,50],\"prompt_len\":1,\"advantage\":1e999}",
           {"{dir}/in.jsonl:2"}),
      grad("grad: behavior_logprobs too short",
           "{\"tokens\":[256,49,50],\"prompt_len\":1,\"advantage\":1,\"behavior_logprobs\":[-0.5]}",
           {"{dir}/in.jsonl:2", "behavior_logprobs"}),
      grad("grad: behavior_logprobs positive",
           "{\"tokens\":[256,49,50],\"prompt_len\":1,\"advantage\":1,\"behavior_logprobs\":[-0.5,0.5]}",
           {"{dir}/in.jsonl:2", "behavior_logprobs"}),
      grad("grad: token id out of vocabulary", "{\"tokens\":[256,49,300],\"prompt_len\":1,\"advantage\":1.0}",
           {"{dir}/in.jsonl:2"}),
  };
  {
    Case c = tokens("input file missing", "", {"{dir}/nope.jsonl"});
    c.args = "model logprobs {dir}/model --input {dir}/nope.jsonl --out {dir}/out.jsonl";
    v.push_back(std::move(c));
  }
  {
    Case c = tokens("input is a folder", "", {"{dir}/model"});
    c.args = "model logprobs {dir}/model --input {dir}/model --out {dir}/out.jsonl";
    v.push_back(std::move(c));
  }
  {
    Case c = tokens("empty input file: nothing to do or a clear error", "", {});
    c.files[1].content = "";
    c.expect = Expect::kOkOrError;
    c.post.clear();
    v.push_back(std::move(c));
  }
  {
    Case c = grad("grad: empty input file", "", {"{dir}/in.jsonl"});
    c.files[1].content = "";
    v.push_back(std::move(c));
  }
  {
    Case c = tokens("--out in a missing folder", "", {"{dir}/no/out.jsonl"});
    c.files[1].content = "{\"tokens\":[256,49,43,49,61]}\n";
    c.args = "model logprobs {dir}/model --input {dir}/in.jsonl --out {dir}/no/out.jsonl";
    v.push_back(std::move(c));
  }
  return v;
}

}  // namespace m1::badinput
