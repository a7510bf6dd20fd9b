// `m1rl tokenize` and `m1rl bench tokenizer` as a user runs them: text lines to JSON id arrays and
// back, bad input named by its line, and the benchmark's JSON keys.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "base/file.h"
#include "model/bpe_tokenizer.h"
#include "model/bpe_train.h"

using json = nlohmann::json;
using namespace m1;

namespace {

struct Run {
  int rc;
  std::string out, err;
};

// Runs `m1rl ARGS < INPUT`, stdout and stderr apart.
Run run(const std::string& args, const std::string& input, const std::string& dir) {
  const std::string in = dir + "/stdin.txt", err = dir + "/stderr.txt";
  REQUIRE(write_file(in, input).is_ok());
  const std::string cmd = std::string(M1_BINARY) + " " + args + " < " + in + " 2> " + err;
  Run r{0, "", ""};
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  auto e = read_file(err);
  if (e.is_ok()) r.err = e.value();
  return r;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);) v.push_back(l);
  return v;
}

const char* const kText =
    "The tokenizer turns text into numbers, and numbers back into text. Merges join the most frequent "
    "pairs of tokens; the words come from a regular expression that keeps letters, numbers and spaces "
    "apart. Numbers like 12345 split into 123 and 45.\n";

struct Dir {
  std::string path;
  Dir() {
    path = (std::filesystem::temp_directory_path() / ("m1-tokenize-" + std::to_string(getpid()))).string();
    remove_all(path);
    make_dirs(path);
  }
  ~Dir() { remove_all(path); }
};

}  // namespace

TEST_CASE("m1rl tokenize: lines to id arrays and --decode back to the same text and bad lines named") {
  Dir d;
  BpeTrainOptions o;
  o.merges = 60;
  auto text = train_bpe_tokenizer_json(kText, o);
  REQUIRE(text.is_ok());
  const std::string tok = d.path + "/tokenizer.json";
  REQUIRE(write_file(tok, text.value()).is_ok());
  const std::string input = "Hello, numbers and text!\n用户 said <end_of_sentence> ok\n\n  tabs\there  \n";
  Run enc = run("tokenize --tokenizer " + tok, input, d.path);
  REQUIRE_MESSAGE(enc.rc == 0, enc.err);
  const std::vector<std::string> in_lines = lines(input), out_lines = lines(enc.out);
  REQUIRE(out_lines.size() == in_lines.size());
  for (const std::string& l : out_lines) CHECK(json::parse(l).is_array());
  CHECK(json::parse(out_lines[2]).empty());                                // an empty line: no ids
  auto parsed = BpeTokenizer::parse(text.value(), "t");
  REQUIRE(parsed.is_ok());
  const std::vector<int> ids1 = json::parse(out_lines[1]).get<std::vector<int>>();
  CHECK(std::count(ids1.begin(), ids1.end(), parsed.value()->special_id("<end_of_sentence>")) == 1);  // one id
  Run dec = run("tokenize --decode --tokenizer " + tok, enc.out, d.path);
  REQUIRE_MESSAGE(dec.rc == 0, dec.err);
  const std::vector<std::string> back = lines(dec.out);
  REQUIRE(back.size() == in_lines.size());
  for (size_t i = 0; i < back.size(); ++i) CHECK(json::parse(back[i]).get<std::string>() == in_lines[i]);

  // The byte-level tokenizer when no file is given.
  Run bytes = run("tokenize", "ab\n", d.path);
  REQUIRE(bytes.rc == 0);
  CHECK(bytes.out == "[97,98]\n");

  // Bad input: the line is named, exit 1.
  Run not_array = run("tokenize --decode --tokenizer " + tok, "[1, 2]\n{\"a\": 1}\n", d.path);
  CHECK(not_array.rc == 1);
  CHECK(not_array.err.find("line 2") != std::string::npos);
  CHECK(not_array.err.find("JSON array") != std::string::npos);
  Run range = run("tokenize --decode --tokenizer " + tok, "[5, 100000]\n", d.path);
  CHECK(range.rc == 1);
  CHECK(range.err.find("line 1") != std::string::npos);
  CHECK(range.err.find("100000") != std::string::npos);
  Run not_int = run("tokenize --decode", "[1, \"x\"]\n", d.path);
  CHECK(not_int.rc == 1);
  CHECK(not_int.err.find("not an integer") != std::string::npos);
  Run bad_utf8 = run("tokenize --tokenizer " + tok, "fine\nbad \xff\xfe\n", d.path);
  CHECK(bad_utf8.rc == 1);
  CHECK(bad_utf8.err.find("line 2") != std::string::npos);
  CHECK(bad_utf8.err.find("UTF-8") != std::string::npos);
  Run missing = run("tokenize --tokenizer " + d.path + "/nope.json", "x\n", d.path);
  CHECK(missing.rc == 1);
  CHECK(missing.err.find("nope.json") != std::string::npos);
}

TEST_CASE("m1rl bench tokenizer --json: MB/s of the tokenizer and of ByteTokenizer") {
  Dir d;
  std::string corpus;
  for (int i = 0; i < 20; ++i) corpus += kText;
  REQUIRE(write_file(d.path + "/corpus.txt", corpus).is_ok());
  Run r = run("bench tokenizer --json --mb 0.05 --merges 50 --corpus " + d.path + "/corpus.txt --save-tokenizer " +
                  d.path + "/t.json",
              "", d.path);
  REQUIRE_MESSAGE(r.rc == 0, r.err);
  const json j = json::parse(r.out);
  for (const char* k : {"encode_mb_per_s", "encode_cold_mb_per_s", "byte_tokenizer_mb_per_s", "bytes_per_token"})
    CHECK(j[k].get<double>() > 0);
  CHECK(j["vocab_size"].get<int>() > 256 + 6);
  CHECK(path_exists(d.path + "/t.json"));
}

TEST_CASE("a tokenizer.json end to end: m1rl sft with it then generate and eval find it in the checkpoint and run refuses it") {
  Dir d;
  BpeTrainOptions o;
  o.merges = 1;  // 256 + 1 + 6 specials = 263 = tiny's vocab_size
  auto text = train_bpe_tokenizer_json(kText, o);
  REQUIRE(text.is_ok());
  REQUIRE(write_file(d.path + "/tokenizer.json", text.value()).is_ok());
  const std::string model = std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json";
  REQUIRE(write_file(d.path + "/sft.toml", "[model]\nconfig = \"" + model +
                                               "\"\ntokenizer = \"tokenizer.json\"\nchat_template = \"m1\"\n"
                                               "[train]\nsteps = 2\nbatch = 4\ncheckpoint_every = 2\neval_every = 0\n"
                                               "[output]\ndir = \"out\"\n")
              .is_ok());
  Run sft = run("sft " + d.path + "/sft.toml", "", d.path);
  REQUIRE_MESSAGE(sft.rc == 0, sft.err);
  const std::string ck = json::parse(sft.out)["checkpoint"].get<std::string>();
  CHECK(path_exists(ck + "/tokenizer.json"));
  Run gen = run("generate " + ck + " --prompt 1+1= --max-new 3 --chat-template m1", "", d.path);
  CHECK_MESSAGE(gen.rc == 0, gen.err);
  Run ev = run("eval " + ck + " --examples 2 --max-new 3 --chat-template m1", "", d.path);
  CHECK_MESSAGE(ev.rc == 0, ev.err);
  Run bad = run("generate " + ck + " --prompt x --chat-template nope", "", d.path);
  CHECK(bad.rc == 1);
  CHECK(bad.err.find("{user}") != std::string::npos);
  // m1rl run: the key is read and checked, and refused until the RL actors take the tokenizer.
  REQUIRE(write_file(d.path + "/run.toml", "[run]\ndir = \"r\"\n[model]\nconfig = \"" + model +
                                               "\"\ntokenizer = \"tokenizer.json\"\n")
              .is_ok());
  Run show = run("config show " + d.path + "/run.toml", "", d.path);
  CHECK(show.rc == 1);
  CHECK(show.err.find("model.tokenizer") != std::string::npos);
  CHECK(show.err.find("byte-level tokenizer") != std::string::npos);
}
