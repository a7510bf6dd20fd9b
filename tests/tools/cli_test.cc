// Black-box tests of the m1rl binary: the exact interfaces (commands, flags, JSON keys) that
// tests outside the project use, and clear errors for bad input.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "model/safetensors.h"

using json = nlohmann::json;
using namespace m1;

namespace {

struct Run {
  int rc;
  std::string out;  // stdout and stderr together
};

// Runs m1rl with ARGS; OUT gets stdout, and stderr too unless stdout_only. With timeout_s > 0 it is
// killed after that many seconds (rc 124 or 137).
Run run(const std::string& args, bool stdout_only = false, int timeout_s = 0) {
  const std::string cmd = (timeout_s > 0 ? "timeout -s KILL " + std::to_string(timeout_s) + " " : std::string()) +
                          std::string(M1_BINARY) + " " + args + (stdout_only ? " 2>/dev/null" : " 2>&1");
  Run r{0, ""};
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

Run run_stdout(const std::string& args) { return run(args, true); }

std::string tmpdir(const std::string& name) {
  auto d = (std::filesystem::temp_directory_path() / ("m1-cli-" + std::to_string(getpid()) + "-" + name)).string();
  remove_all(d);
  make_dirs(d);
  return d;
}

const std::string kSrc = M1_SOURCE_DIR;

std::string init_tiny(const std::string& name) {
  const std::string d = tmpdir(name);
  const std::string m = d + "/model";
  Run r = run("model init --config " + kSrc + "/configs/models/tiny.json --seed 7 --out " + m);
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  return d;
}

}  // namespace

TEST_CASE("m1rl model info --json on the M1 config: 456.1B total, 45.9B active, keyed objects") {
  Run r = run_stdout("model info " + kSrc + "/configs/models/minimax-m1.json --json");
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  json j = json::parse(r.out);
  CHECK(std::fabs(j["total_params"].get<double>() / 456.1e9 - 1) < 0.005);
  CHECK(std::fabs(j["active_params"].get<double>() / 45.9e9 - 1) < 0.005);
  CHECK(j["weights_bytes"].get<double>() == doctest::Approx(2 * j["total_params"].get<double>()));
  for (const char* c : {"4096", "16384", "65536", "131072", "1048576"}) {
    CHECK(j["flops_per_token"].contains(c));
    CHECK(j["state_bytes_per_sequence"].contains(c));
  }
  // lightning state is constant; the softmax KV cache grows linearly with the context
  const double s4k = j["state_bytes_per_sequence"]["4096"].get<double>();
  const double s16k = j["state_bytes_per_sequence"]["16384"].get<double>();
  const double lightning = 70.0 * 64 * 128 * 128 * 4, kv_per_tok = 10.0 * 2 * 8 * 128 * 2;
  CHECK(s4k == doctest::Approx(lightning + 4096 * kv_per_tok));
  CHECK(s16k == doctest::Approx(lightning + 16384 * kv_per_tok));
}

TEST_CASE("m1rl model init writes config.json and model.safetensors; info reads the directory") {
  const std::string d = init_tiny("init");
  CHECK(path_exists(d + "/model/config.json"));
  CHECK(path_exists(d + "/model/model.safetensors"));
  Run r = run_stdout("model info " + d + "/model --json");
  REQUIRE(r.rc == 0);
  CHECK(json::parse(r.out)["total_params"].get<double>() > 0);
}

TEST_CASE("m1rl model logprobs: n-1 logprobs per line, packing does not change them") {
  const std::string d = init_tiny("logprobs");
  REQUIRE(write_file(d + "/in.jsonl", std::string("{\"tokens\":[256,49,43,50,61]}\n{\"tokens\":[256,51]}\n"
                                                  "{\"tokens\":[256,57,57,57,57,57,43,49,61]}\n")).is_ok());
  REQUIRE(write_file(d + "/one.jsonl", std::string("{\"tokens\":[256,57,57,57,57,57,43,49,61]}\n")).is_ok());
  Run r = run("model logprobs " + d + "/model --input " + d + "/in.jsonl --out " + d + "/out.jsonl");
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  Run r1 = run("model logprobs " + d + "/model --input " + d + "/one.jsonl --out " + d + "/out1.jsonl");
  REQUIRE_MESSAGE(r1.rc == 0, r1.out);
  auto text = read_file(d + "/out.jsonl").value();
  auto text1 = read_file(d + "/out1.jsonl").value();
  std::vector<json> lines;
  size_t p = 0;
  while (p < text.size()) {
    size_t e = text.find('\n', p);
    lines.push_back(json::parse(text.substr(p, e - p)));
    p = e + 1;
  }
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["logprobs"].size() == 4);
  CHECK(lines[1]["logprobs"].size() == 1);
  CHECK(lines[2]["logprobs"].size() == 8);
  for (auto& l : lines)
    for (auto& v : l["logprobs"]) CHECK(v.get<double>() <= 0.0);
  json alone = json::parse(text1.substr(0, text1.find('\n')));
  for (size_t i = 0; i < 8; ++i)
    CHECK(alone["logprobs"][i].get<double>() == doctest::Approx(lines[2]["logprobs"][i].get<double>()).epsilon(1e-5));
}

TEST_CASE("m1rl model grad: every weight's gradient; on-policy cispo equals dapo; loss printed") {
  const std::string d = init_tiny("grad");
  REQUIRE(write_file(d + "/in.jsonl",
                     std::string("{\"tokens\":[256,49,43,50,61,51,257],\"prompt_len\":5,\"advantage\":1.0}\n"
                                 "{\"tokens\":[256,49,43,50,61,52,257],\"prompt_len\":5,\"advantage\":-1.0}\n"))
              .is_ok());
  Run a = run_stdout("model grad " + d + "/model --input " + d + "/in.jsonl --out " + d + "/g_cispo.safetensors");
  REQUIRE_MESSAGE(a.rc == 0, a.out);
  json ja = json::parse(a.out);
  CHECK(ja.contains("loss"));
  CHECK(std::isfinite(ja["loss"].get<double>()));
  Run b = run_stdout("model grad " + d + "/model --input " + d + "/in.jsonl --out " + d +
                     "/g_dapo.safetensors --objective dapo");
  REQUIRE_MESSAGE(b.rc == 0, b.out);
  auto ra = SafetensorsReader::open(d + "/g_cispo.safetensors");
  auto rb = SafetensorsReader::open(d + "/g_dapo.safetensors");
  REQUIRE(ra.is_ok());
  REQUIRE(rb.is_ok());
  auto rm = SafetensorsReader::open(d + "/model");
  REQUIRE(rm.is_ok());
  CHECK(ra->tensors().size() == rm->tensors().size());
  double maxdiff = 0, maxabs = 0;
  for (const TensorInfo& t : ra->tensors()) {
    CHECK(t.dtype == "F32");
    std::vector<float> x(size_t(t.numel())), y(size_t(t.numel()));
    REQUIRE(ra->read_f32(t.name, t.shape, x.data()).is_ok());
    REQUIRE(rb->read_f32(t.name, t.shape, y.data()).is_ok());
    for (size_t i = 0; i < x.size(); ++i) {
      maxdiff = std::max(maxdiff, double(std::fabs(x[i] - y[i])));
      maxabs = std::max(maxabs, double(std::fabs(x[i])));
    }
  }
  CHECK(maxabs > 1e-4);
  CHECK(maxdiff <= 1e-6 * (1 + maxabs));
}

TEST_CASE("m1rl model grad: bad input names the file, the line and the key") {
  const std::string d = init_tiny("badgrad");
  REQUIRE(write_file(d + "/bad1.jsonl", std::string("{\"tokens\":[256,49],\"prompt_len\":1,\"advantage\":1}\nnot json\n")).is_ok());
  Run r = run("model grad " + d + "/model --input " + d + "/bad1.jsonl --out " + d + "/g.safetensors");
  CHECK(r.rc != 0);
  CHECK(r.out.find("bad1.jsonl:2") != std::string::npos);
  REQUIRE(write_file(d + "/bad2.jsonl", std::string("{\"tokens\":[256,49,50],\"prompt_len\":1,\"advantage\":1,"
                                                    "\"behavior_logprobs\":[-0.5]}\n")).is_ok());
  r = run("model grad " + d + "/model --input " + d + "/bad2.jsonl --out " + d + "/g.safetensors");
  CHECK(r.rc != 0);
  CHECK(r.out.find("behavior_logprobs") != std::string::npos);
  REQUIRE(write_file(d + "/bad3.jsonl", std::string("{\"tokens\":[256,99999],\"prompt_len\":1,\"advantage\":1}\n")).is_ok());
  r = run("model grad " + d + "/model --input " + d + "/bad3.jsonl --out " + d + "/g.safetensors");
  CHECK(r.rc != 0);
  CHECK(r.out.find("bad3.jsonl:1") != std::string::npos);
  r = run("model grad " + d + "/model --input " + d + "/missing.jsonl --out " + d + "/g.safetensors");
  CHECK(r.rc != 0);
  CHECK(r.out.find("missing.jsonl") != std::string::npos);
  r = run("model grad " + d + "/model --input " + d + "/bad3.jsonl --out " + d + "/g.safetensors --objective ppo");
  CHECK(r.rc != 0);
  CHECK(r.out.find("objective") != std::string::npos);
}

TEST_CASE("m1rl generate is deterministic in its seed; bad model dir is a clear error") {
  const std::string d = init_tiny("gen");
  Run a = run_stdout("generate " + d + "/model --prompt '1+2=' --max-new 8 --seed 4");
  Run b = run_stdout("generate " + d + "/model --prompt '1+2=' --max-new 8 --seed 4");
  REQUIRE(a.rc == 0);
  CHECK(a.out == b.out);
  Run c = run("generate " + d + "/nope --prompt x");
  CHECK(c.rc != 0);
  CHECK(c.out.find("nope") != std::string::npos);
}

TEST_CASE("m1rl rejects unknown commands and missing arguments with a non-zero exit") {
  CHECK(run("frobnicate").rc != 0);
  CHECK(run("model init --seed 1").rc != 0);
}

TEST_CASE("m1rl bench learner --json: both step kinds timed, sharing computes fewer token positions") {
  Run r = run_stdout("bench learner --config " + kSrc + "/configs/models/tiny.json --groups 3 --group 4 --rounds 1 --json");
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  const json j = json::parse(r.out);
  CHECK(j.at("rollouts").get<int>() == 12);
  CHECK(j.at("computed_tokens").at("shared").get<int>() < j.at("computed_tokens").at("unshared").get<int>());
  CHECK(j.at("step_s").at("shared").get<double>() > 0);
  CHECK(j.at("step_s").at("unshared").get<double>() > 0);
  CHECK(j.at("speedup").get<double>() > 0);
  CHECK(run("bench learner --config " + kSrc + "/configs/models/nope.json").rc != 0);
}

TEST_CASE("m1rl run stopped by run.max_seconds: records in step order, a final evaluation, a checkpoint, exit 0") {
  // The crash test's setting with a 1 s budget and no evaluation after step 0: the run stops
  // between evaluations, so it evaluates once more before it exits (a learner whose closures
  // kept it alive once hung here, in the actor system's shutdown).
  const std::string d = tmpdir("run");
  auto cfg = read_file(kSrc + "/configs/test-crash.toml");
  REQUIRE(cfg.is_ok());
  std::string text = cfg.value();
  auto set = [&](const std::string& key, const std::string& value) {
    const size_t at = text.find("\n" + key + " = ");
    REQUIRE(at != std::string::npos);
    text.replace(at + 1, text.find('\n', at + 1) - at - 1, key + " = " + value);
  };
  set("steps", "100000");
  set("eval_every", "100000");
  set("seed", "5\nmax_seconds = 1");
  set("config", "\"" + kSrc + "/configs/models/tiny.json\"");  // tests run in the build tree
  REQUIRE(write_file(d + "/run.toml", text).is_ok());
  Run r = run("run " + d + "/run.toml --run-dir " + d + "/r", false, 120);
  REQUIRE_MESSAGE(r.rc == 0, r.out);
  auto m = read_file(d + "/r/metrics.jsonl");
  REQUIRE(m.is_ok());
  std::vector<json> recs;
  std::istringstream in(m.value());
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) recs.push_back(json::parse(line));
  REQUIRE(recs.size() >= 3);  // step 0, at least one step, the final evaluation
  const int last = int(recs.size()) - 2;
  for (int i = 0; i <= last; ++i) CHECK(recs[size_t(i)].at("step").get<int>() == i);
  CHECK(recs[0].contains("eval_accuracy"));
  CHECK_FALSE(recs[size_t(last)].contains("eval_accuracy"));
  const json& fin = recs.back();
  CHECK(fin.at("step").get<int>() == last);
  CHECK(fin.at("final_eval").get<bool>());
  CHECK(fin.contains("eval_accuracy"));
  CHECK(std::filesystem::exists(d + "/r/checkpoints/step_" + std::to_string(last)));
}
