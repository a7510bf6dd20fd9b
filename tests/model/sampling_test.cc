#include "model/sampling.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "base/rng.h"

namespace m1 {
namespace {

// log-softmax of a probability vector (which need not be normalised).
std::vector<float> log_softmax_of(const std::vector<double>& p) {
  double z = 0;
  for (double x : p) z += x;
  std::vector<float> out;
  for (double x : p) out.push_back(float(std::log(x / z)));
  return out;
}

// The expected sampling distribution, computed independently by the textbook recipe on a
// small row (O(V²) ranking, no sorting helpers shared with the implementation).
std::vector<double> reference_q(const std::vector<float>& logsm, const SamplingParams& sp) {
  const int V = int(logsm.size());
  std::vector<double> q(V);
  double z = 0;
  for (int i = 0; i < V; ++i) z += q[i] = std::exp(double(logsm[i]) / sp.temperature);
  for (double& x : q) x /= z;
  // rank[i] = position of i in descending order, ties to the lower id.
  std::vector<int> rank(V, 0);
  for (int i = 0; i < V; ++i)
    for (int j = 0; j < V; ++j)
      if (q[j] > q[i] || (q[j] == q[i] && j < i)) ++rank[i];
  if (sp.top_k > 0)
    for (int i = 0; i < V; ++i)
      if (rank[i] >= sp.top_k) q[i] = 0;
  z = 0;
  for (double x : q) z += x;
  for (double& x : q) x /= z;
  if (sp.top_p < 1) {
    std::vector<double> mass_before(V, 0);  // mass of ids ranked strictly before i
    for (int i = 0; i < V; ++i)
      for (int j = 0; j < V; ++j)
        if (rank[j] < rank[i]) mass_before[i] += q[j];
    for (int i = 0; i < V; ++i)
      if (mass_before[i] >= sp.top_p) q[i] = 0;
    z = 0;
    for (double x : q) z += x;
    for (double& x : q) x /= z;
  }
  return q;
}

const std::vector<double> kProbs = {0.1, 0.2, 0.3, 0.25, 0.15};

TEST_CASE("sampling: greedy is argmax with ties to the lower id and consumes no randomness") {
  std::vector<float> row = log_softmax_of({0.1, 0.4, 0.1, 0.4});
  SamplingParams sp;
  sp.temperature = 0;
  Rng rng(3);
  const auto before = rng.state();
  for (int i = 0; i < 10; ++i) {
    SampledToken t = sample_token(row.data(), int(row.size()), sp, rng);
    CHECK(t.id == 1);
    CHECK(t.prob == 1.0f);
    CHECK(t.logprob == 0.0f);
  }
  CHECK(rng.state() == before);
  float one = 0;
  CHECK(sample_token(&one, 1, sp, rng).id == 0);
}

TEST_CASE("sampling: top_k = 1 and a tiny top_p are greedy") {
  const uint64_t seed = 11;
  Rng rng(seed);
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<double> p(7);
    for (double& x : p) x = 0.01 + rng.uniform();
    std::vector<float> row = log_softmax_of(p);
    int best = 0;
    for (int i = 1; i < 7; ++i)
      if (row[i] > row[best]) best = i;
    INFO("seed " << seed << " trial " << trial);
    for (float temp : {0.3f, 1.0f, 2.5f}) {
      SamplingParams k1{temp, 1.0f, 1};
      SamplingParams ptiny{temp, 1e-6f, 0};
      for (const SamplingParams& sp : {k1, ptiny}) {
        SampledToken t = sample_token(row.data(), 7, sp, rng);
        CHECK(t.id == best);
        CHECK(t.prob == doctest::Approx(1.0));
        CHECK(t.logprob == doctest::Approx(0.0));
      }
    }
  }
}

TEST_CASE("sampling: empirical frequencies match the sampling distribution within 3 sigma") {
  const std::vector<float> row = log_softmax_of(kProbs);
  const int V = int(row.size());
  const int N = 20000;
  const SamplingParams cases[] = {
      {1.0f, 1.0f, 0},   // plain
      {0.5f, 1.0f, 0},   // sharpened
      {2.0f, 1.0f, 0},   // flattened
      {1.0f, 1.0f, 3},   // top-k
      {1.0f, 0.5f, 0},   // top-p: keeps {2, 3}
      {1.0f, 0.9f, 4},   // both
  };
  uint64_t seed = 100;
  for (const SamplingParams& sp : cases) {
    ++seed;
    INFO("seed " << seed << " T " << sp.temperature << " top_p " << sp.top_p << " top_k "
                 << sp.top_k);
    const std::vector<double> q = reference_q(row, sp);
    Rng rng(seed);
    std::vector<int> count(V, 0);
    for (int n = 0; n < N; ++n) {
      SampledToken t = sample_token(row.data(), V, sp, rng);
      REQUIRE(t.id >= 0);
      REQUIRE(t.id < V);
      ++count[t.id];
      // The reported probability is the renormalised one, and logprob is its log.
      CHECK(t.prob == doctest::Approx(q[t.id]).epsilon(1e-5));
      CHECK(t.logprob == doctest::Approx(std::log(q[t.id])).epsilon(1e-5));
    }
    for (int i = 0; i < V; ++i) {
      const double sigma = std::sqrt(N * q[i] * (1 - q[i]));
      INFO("id " << i << " count " << count[i] << " expected " << N * q[i]);
      CHECK(std::abs(count[i] - N * q[i]) <= 3 * sigma);
      if (q[i] == 0) CHECK(count[i] == 0);
    }
  }
  // The truncated cases drop what they should.
  CHECK(reference_q(row, cases[3])[0] == 0);
  CHECK(reference_q(row, cases[3])[4] == 0);
  CHECK(reference_q(row, cases[4])[1] == 0);
  CHECK(reference_q(row, cases[4])[2] == doctest::Approx(0.3 / 0.55));
}

TEST_CASE("sampling: T = 1 without filters reports the model's own logprob") {
  const std::vector<float> row = log_softmax_of(kProbs);
  Rng rng(5);
  for (int n = 0; n < 200; ++n) {
    SampledToken t = sample_token(row.data(), 5, SamplingParams{}, rng);
    CHECK(t.logprob == doctest::Approx(row[t.id]).epsilon(1e-6));
    CHECK(t.prob == doctest::Approx(kProbs[t.id]).epsilon(1e-5));
  }
}

TEST_CASE("sampling: lower temperature sharpens, higher flattens") {
  const std::vector<float> row = log_softmax_of(kProbs);
  double last = 0;
  for (float temp : {4.0f, 2.0f, 1.0f, 0.5f, 0.25f, 0.01f}) {
    const double q_max = reference_q(row, SamplingParams{temp, 1.0f, 0})[2];
    CHECK(q_max > last);
    last = q_max;
    // Drawn at this temperature, the argmax is reported with exactly that probability.
    Rng rng(9);
    bool seen = false;
    for (int n = 0; n < 200 && !seen; ++n) {
      SampledToken t = sample_token(row.data(), 5, SamplingParams{temp, 1.0f, 0}, rng);
      if (t.id == 2) {
        seen = true;
        CHECK(t.prob == doctest::Approx(q_max).epsilon(1e-5));
      }
    }
    CHECK(seen);
  }
  CHECK(last > 0.999);
}

TEST_CASE("sampling: -inf ids are never drawn") {
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> row = {ninf, std::log(0.5f), ninf, std::log(0.5f), ninf};
  Rng rng(17);
  for (const SamplingParams& sp :
       {SamplingParams{1.0f, 1.0f, 0}, SamplingParams{3.0f, 1.0f, 4}, SamplingParams{1.0f, 0.99f, 0},
        SamplingParams{0.0f, 1.0f, 0}}) {
    for (int n = 0; n < 500; ++n) {
      SampledToken t = sample_token(row.data(), 5, sp, rng);
      CHECK((t.id == 1 || t.id == 3));
    }
  }
}

TEST_CASE("sampling: top-k ties go to the lower id") {
  std::vector<float> row = log_softmax_of({1, 1, 1, 1, 1});
  Rng rng(23);
  for (int n = 0; n < 500; ++n) {
    SampledToken t = sample_token(row.data(), 5, SamplingParams{1.0f, 1.0f, 2}, rng);
    CHECK(t.id <= 1);
    CHECK(t.prob == doctest::Approx(0.5));
  }
}

TEST_CASE("sampling: same seed, same sequence") {
  const std::vector<float> row = log_softmax_of(kProbs);
  const SamplingParams sp{0.8f, 0.95f, 4};
  Rng a(42), b(42), c(43);
  bool any_diff = false;
  for (int n = 0; n < 1000; ++n) {
    SampledToken ta = sample_token(row.data(), 5, sp, a);
    SampledToken tb = sample_token(row.data(), 5, sp, b);
    SampledToken tc = sample_token(row.data(), 5, sp, c);
    CHECK(ta.id == tb.id);
    CHECK(ta.prob == tb.prob);
    CHECK(ta.logprob == tb.logprob);
    any_diff |= ta.id != tc.id;
  }
  CHECK(any_diff);
  CHECK(a.state() == b.state());
}

TEST_CASE("sampling: parameter validation names the field") {
  CHECK(check_sampling_params(SamplingParams{}).is_ok());
  CHECK(check_sampling_params(SamplingParams{0.0f, 1.0f, 0}).is_ok());
  Status t = check_sampling_params(SamplingParams{-1.0f, 1.0f, 0});
  CHECK_FALSE(t.is_ok());
  CHECK(t.message().find("temperature") != std::string::npos);
  CHECK(check_sampling_params(SamplingParams{std::nanf(""), 1.0f, 0}).message().find(
            "temperature") != std::string::npos);
  CHECK(check_sampling_params(SamplingParams{1.0f, 0.0f, 0}).message().find("top_p") !=
        std::string::npos);
  CHECK(check_sampling_params(SamplingParams{1.0f, 1.5f, 0}).message().find("top_p") !=
        std::string::npos);
  CHECK(check_sampling_params(SamplingParams{1.0f, 1.0f, -1}).message().find("top_k") !=
        std::string::npos);
}

}  // namespace
}  // namespace m1
