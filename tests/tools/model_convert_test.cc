// Black-box tests of `m1rl model convert`: a model directory to transformers' MiniMax layout and
// back gives byte-identical `m1rl model logprobs` output from all three directories; a partial-RoPE
// model is refused without --force; bad flags and a non-empty OUT_DIR fail with exit 1 and write
// nothing.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "base/file.h"

using json = nlohmann::json;
using namespace m1;

namespace {

struct Cmd {
  int rc;
  std::string out;  // stdout and stderr together
};

Cmd m1rl(const std::string& args) {
  Cmd r{0, ""};
  FILE* p = popen((std::string(M1_BINARY) + " " + args + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string scratch(const std::string& name) {
  auto d = (std::filesystem::temp_directory_path() / ("m1-convert-cli-" + std::to_string(getpid()) + "-" + name))
               .string();
  remove_all(d);
  make_dirs(d);
  return d;
}

std::string slurp(const std::string& path) {
  auto r = read_file(path);
  REQUIRE_MESSAGE(r.is_ok(), r.status().message());
  return r.value();
}

// `m1rl model init` of configs/models/tiny.json into D/model, with ROTARY_DIM (tiny's head_dim is 8).
void init_model(const std::string& d, int rotary_dim) {
  json cfg = json::parse(slurp(std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json"));
  cfg["rotary_dim"] = rotary_dim;
  REQUIRE(write_file(d + "/config.json", cfg.dump(2)).is_ok());
  Cmd r = m1rl("model init --config " + d + "/config.json --seed 3 --out " + d + "/model");
  REQUIRE_MESSAGE(r.rc == 0, r.out);
}

std::string logprobs_of(const std::string& d, const std::string& model) {
  Cmd r = m1rl("model logprobs " + d + "/" + model + " --input " + d + "/in.jsonl --out " + d + "/" + model +
               ".jsonl");
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  return slurp(d + "/" + model + ".jsonl");
}

}  // namespace

TEST_CASE("m1rl model convert --to hf, then --to release: same logprobs from all three directories") {
  const std::string d = scratch("both");
  init_model(d, 8);
  Cmd r = m1rl("model convert " + d + "/model " + d + "/hf --to hf");
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  CHECK(r.out.find("(release)") != std::string::npos);
  CHECK(r.out.find("(hf)") != std::string::npos);
  const json hf = json::parse(slurp(d + "/hf/config.json"));
  CHECK(hf["model_type"] == "minimax");
  CHECK(hf.contains("layer_types"));
  CHECK(path_exists(d + "/hf/model.safetensors"));

  r = m1rl("model convert " + d + "/hf " + d + "/back --to release");
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  CHECK(json::parse(slurp(d + "/back/config.json")).contains("attn_type_list"));

  REQUIRE(write_file(d + "/in.jsonl", std::string("{\"tokens\":[5,80,12,200,7,7,33]}\n{\"tokens\":[1,2,3]}\n")).is_ok());
  const std::string want = logprobs_of(d, "model");
  CHECK(logprobs_of(d, "hf") == want);
  CHECK(logprobs_of(d, "back") == want);

  // bf16, sharded (the shard limit is a hidden option): loads and stays close.
  r = m1rl("model convert " + d + "/model " + d + "/hf16 --to hf --dtype bf16 --max-shard-bytes 20000");
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  CHECK(r.out.find("BF16") != std::string::npos);
  const json idx = json::parse(slurp(d + "/hf16/model.safetensors.index.json"));
  CHECK(idx["weight_map"].contains("model.layers.0.mlp.experts.gate_up_proj"));
  Cmd lp = m1rl("model logprobs " + d + "/hf16 --input " + d + "/in.jsonl --out " + d + "/hf16.jsonl");
  CHECK_MESSAGE(lp.rc == 0, lp.out);
}

TEST_CASE("m1rl model convert refuses a partial-RoPE model without --force, and bad input with exit 1") {
  const std::string d = scratch("refuse");
  init_model(d, 4);
  Cmd r = m1rl("model convert " + d + "/model " + d + "/hf --to hf");
  CHECK(r.rc == 1);
  INFO(r.out);
  CHECK(r.out.find(d + "/model") != std::string::npos);
  CHECK(r.out.find("RoPE rotates 4 of 8") != std::string::npos);
  CHECK(r.out.find("--force") != std::string::npos);
  CHECK_FALSE(path_exists(d + "/hf"));

  r = m1rl("model convert " + d + "/model " + d + "/hf --to hf --force");
  CHECK_MESSAGE(r.rc == 0, r.out);
  CHECK(r.out.find("warning") != std::string::npos);

  r = m1rl("model convert " + d + "/model " + d + "/x --to onnx");
  CHECK(r.rc == 1);
  CHECK(r.out.find("--to 'onnx'") != std::string::npos);
  r = m1rl("model convert " + d + "/model " + d + "/x --to hf --dtype f16");
  CHECK(r.rc == 1);
  CHECK(r.out.find("--dtype 'f16'") != std::string::npos);
  r = m1rl("model convert " + d + "/missing " + d + "/x --to hf");
  CHECK(r.rc == 1);
  CHECK(r.out.find(d + "/missing") != std::string::npos);
  r = m1rl("model convert " + d + "/model " + d + "/hf --to release");  // hf/ is not empty now
  CHECK(r.rc == 1);
  CHECK(r.out.find("not empty") != std::string::npos);
  CHECK_FALSE(path_exists(d + "/x"));
}
