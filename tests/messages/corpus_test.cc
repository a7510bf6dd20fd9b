// Replays the fuzz corpus (messages/fuzz/corpus/<stem>/*) through decode<T> of each directory's
// root type, with every field touched when a file decodes. This is the plain driver that runs
// with any compiler; the libFuzzer targets (clang only, messages/fuzz/fuzz.cmake) grow the corpus.
// Files named seed_* are valid samples and must decode; any other file (a reproducer added after
// a fuzzer finding) only has to be handled without a crash.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "messages/codec.h"
#include "tests/messages/samples.h"
#include "tests/messages/touch.h"

using namespace m1;
using namespace m1::msg;
using namespace m1::msg::testing;
namespace fs = std::filesystem;

namespace {

const fs::path kCorpus = fs::path(M1_SOURCE_DIR) / "messages" / "fuzz" / "corpus";

std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open " << p.string());
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("every corpus file replays through its root type's decode without a crash") {
  REQUIRE_MESSAGE(fs::is_directory(kCorpus), kCorpus.string() << " is missing");
  size_t files = 0, seeds = 0, accepted = 0;
  for (const auto& dir : fs::directory_iterator(kCorpus)) {
    if (!dir.is_directory()) continue;
    const std::string stem = dir.path().filename().string();
    const RootOps* ops = ops_for_stem(stem);
    CHECK_MESSAGE(ops != nullptr, "corpus directory " << stem << " names no root type");
    if (!ops) continue;
    for (const auto& f : fs::directory_iterator(dir.path())) {
      if (!f.is_regular_file()) continue;
      const std::string name = f.path().filename().string();
      CAPTURE(f.path().string());
      const std::vector<uint8_t> bytes = read_file(f.path());
      // An exact-size heap copy, so ASan builds catch any read past the end.
      std::unique_ptr<uint8_t[]> buf(new uint8_t[bytes.size()]);
      std::copy(bytes.begin(), bytes.end(), buf.get());
      uint64_t hash = 0;
      const Status st = ops->decode_and_touch(buf.get(), bytes.size(), &hash);
      ++files;
      accepted += st.is_ok();
      if (name.rfind("seed_", 0) == 0) {
        ++seeds;
        CHECK_MESSAGE(st.is_ok(), st.message());
      }
    }
  }
  MESSAGE("corpus: " << files << " files (" << seeds << " seeds), " << accepted << " decoded");
  CHECK(seeds > 0);
}

TEST_CASE("every root type has a seed corpus directory with decodable seeds") {
  for (const RootOps& o : root_ops()) {
    const std::string stem = o.stem;
    CAPTURE(stem);
    const fs::path dir = kCorpus / o.stem;
    REQUIRE(fs::is_directory(dir));
    size_t seeds = 0;
    for (const auto& f : fs::directory_iterator(dir)) seeds += f.path().filename().string().rfind("seed_", 0) == 0;
    CHECK(seeds >= 1);
  }
}

TEST_CASE("the committed seeds match today's samples (regenerate with M1_WRITE_CORPUS if a schema changed)") {
  // Not an error when they differ (old seeds stay valid inputs), but worth knowing.
  size_t same = 0, total = 0;
  for (const Sample& s : valid_samples()) {
    const fs::path p = kCorpus / s.stem / ("seed_" + s.variant + ".bin");
    if (!fs::exists(p)) continue;
    ++total;
    same += read_file(p) == s.bytes.vec();
  }
  MESSAGE(same << " of " << total << " committed seeds equal the current samples");
  CHECK(total > 0);
}
