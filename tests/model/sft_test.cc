// SFT on `tiny`: the loss falls and held-out accuracy rises; a resumed run continues from the
// newest complete checkpoint and reaches the same weights as an uninterrupted one.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>

#include "base/file.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/sft.h"

using namespace m1;

namespace {

SftConfig tiny_sft(const std::string& out, int steps) {
  SftConfig c;
  c.model_config = std::string(M1_SOURCE_DIR) + "/configs/models/tiny.json";
  c.tasks = {"add"};
  c.min_difficulty = c.max_difficulty = 1;
  c.steps = steps;
  c.batch = 32;
  c.lr = 1e-2;
  c.warmup = 5;
  c.checkpoint_every = 20;
  c.eval_every = 0;
  c.eval_examples = 30;
  c.max_new = 8;
  c.out_dir = out;
  c.quiet = true;
  return c;
}

std::string tmp(const std::string& n) {
  auto d = (std::filesystem::temp_directory_path() / ("m1-sft-" + std::to_string(getpid()) + "-" + n)).string();
  remove_all(d);
  return d;
}

}  // namespace

TEST_CASE("SFT on tiny lowers the loss and raises held-out accuracy") {
  SftConfig c = tiny_sft(tmp("learn"), 250);
  c.eval_every = 250;
  c.eval_examples = 40;
  SftReport r;
  Status s = run_sft(c, &r);
  REQUIRE_MESSAGE(s.is_ok(), s.message());
  MESSAGE("loss " << r.first_loss << " -> " << r.last_loss << ", accuracy " << r.eval_before << " -> " << r.eval_after);
  CHECK(r.last_loss < 0.5 * r.first_loss);
  CHECK(r.eval_after >= r.eval_before + 0.25);
  remove_all(c.out_dir);
}

TEST_CASE("SFT resumes from the newest complete checkpoint and matches an uninterrupted run") {
  // A constant learning rate after warm-up, so the schedule does not depend on the step budget.
  SftConfig full = tiny_sft(tmp("full"), 40);
  full.min_lr_frac = 1.0;
  SftReport r1;
  REQUIRE(run_sft(full, &r1).is_ok());
  SftConfig part = tiny_sft(tmp("part"), 20);
  part.min_lr_frac = 1.0;
  SftReport r2;
  REQUIRE(run_sft(part, &r2).is_ok());
  // an incomplete checkpoint (no DONE) must be ignored
  REQUIRE(make_dirs(part.out_dir + "/checkpoints/step_30").is_ok());
  part.steps = 40;
  SftReport r3;
  REQUIRE(run_sft(part, &r3).is_ok());
  CHECK(r3.start_step == 20);
  CHECK(r3.end_step == 40);
  auto a = load_model(latest_checkpoint(full.out_dir + "/checkpoints").dir);
  auto b = load_model(latest_checkpoint(part.out_dir + "/checkpoints").dir);
  REQUIRE(a.is_ok());
  REQUIRE(b.is_ok());
  double maxdiff = 0;
  for (size_t i = 0; i < a->num_params(); ++i)
    maxdiff = std::max(maxdiff, double(std::fabs(a->params()[i] - b->params()[i])));
  CHECK(maxdiff < 1e-6);
  remove_all(full.out_dir);
  remove_all(part.out_dir);
}
