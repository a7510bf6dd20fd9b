#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "actors/metrics/metrics_log.h"
#include "actors/metrics/plots.h"
#include "base/file.h"

using namespace m1;
using nlohmann::json;

namespace {

// A fresh, empty directory for one test case.
std::string fresh_dir(const std::string& name) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("m1-metrics-test-" + name)).string();
  REQUIRE(remove_all(dir).is_ok());
  REQUIRE(make_dirs(dir).is_ok());
  return dir;
}

void append_raw(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::app);
  f << bytes;
}

std::string slurp(const std::string& path) {
  auto r = read_file(path);
  REQUIRE(r.is_ok());
  return *r;
}

// The x,y pairs of the polyline with data-key KEY in SVG, or -1 when there is none.
int polyline_points(const std::string& svg, const std::string& key) {
  const size_t at = svg.find("<polyline class=\"series\" data-key=\"" + key + "\"");
  if (at == std::string::npos) return -1;
  const size_t p = svg.find("points=\"", at);
  const size_t e = svg.find('"', p + 8);
  const std::string pts = svg.substr(p + 8, e - p - 8);
  if (pts.empty()) return 0;
  int n = 1;
  for (char c : pts) n += c == ' ';
  return n;
}

size_t count(const std::string& s, const std::string& sub) {
  size_t n = 0;
  for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + 1)) ++n;
  return n;
}

std::vector<json> demo_records() {
  // 10 steps; eval every 5 steps; step 3 has no entropy; step 4's reward is NaN (written as null).
  std::vector<json> rs;
  for (int s = 0; s < 10; ++s) {
    json r = {{"step", s},
              {"time_s", 12.5 * (s + 1)},
              {"reward_mean", 0.1 * s},
              {"length_mean", 100 + 10 * s},
              {"length_p99", 400 + 20 * s},
              {"is_clip_fraction", 0.05 - 0.004 * s},
              {"train_infer_pearson", 0.99 + 0.001 * (s % 3)}};
    if (s != 3) r["entropy_mean"] = 1.5 - 0.1 * s;
    if (s % 5 == 4) r["eval_accuracy"] = 0.3 + 0.1 * (s / 5);
    if (s == 4) r["reward_mean"] = std::nan("");
    rs.push_back(r);
  }
  return rs;
}

}  // namespace

TEST_CASE("MetricsLog: append then read_all round-trips, across reopen") {
  const std::string dir = fresh_dir("roundtrip");
  const std::string path = path_join(dir, "metrics.jsonl");
  std::vector<json> written;
  {
    MetricsLog log(MetricsLogOptions{.fsync_every_lines = 2, .fsync_interval_s = 0});
    REQUIRE(log.open(path).is_ok());
    for (int s = 0; s < 5; ++s) {
      json r = {{"step", s}, {"reward_mean", 0.25 * s}, {"note", "line\nbreak \"quoted\""},
                {"finish_reasons", {{"stop", s}, {"length", 1}}}, {"staleness_hist", {3, s, 0}}};
      REQUIRE(log.append(r).is_ok());
      written.push_back(r);
    }
    CHECK(log.lines_appended() == 5);
    CHECK(log.append(json::array({1, 2})).message().find("JSON object") != std::string::npos);
    CHECK(log.close().is_ok());
  }
  MetricsLog again;
  REQUIRE(again.open(path).is_ok());
  CHECK(again.torn_bytes_dropped() == 0);
  json extra = {{"step", 5}, {"eval_accuracy", 0.5}};
  REQUIRE(again.append(extra).is_ok());
  written.push_back(extra);
  REQUIRE(again.close().is_ok());

  std::vector<MetricsLineError> errors;
  auto back = MetricsLog::read_all(path, &errors);
  REQUIRE(back.is_ok());
  CHECK(errors.empty());
  REQUIRE(back->size() == written.size());
  for (size_t i = 0; i < written.size(); ++i) CHECK((*back)[i] == written[i]);
  // Exactly one record per line, every line terminated.
  const std::string text = slurp(path);
  CHECK(count(text, "\n") == written.size());
  CHECK(text.back() == '\n');

  CHECK(!MetricsLog::read_all(path_join(dir, "absent.jsonl")).is_ok());
  MetricsLog closed;
  CHECK(!closed.append(json{{"step", 1}}).is_ok());
}

TEST_CASE("MetricsLog: a torn last line is truncated on open and appends continue cleanly") {
  const std::string dir = fresh_dir("torn");
  const std::string path = path_join(dir, "metrics.jsonl");
  {
    MetricsLog log;
    REQUIRE(log.open(path).is_ok());
    REQUIRE(log.append({{"step", 0}, {"reward_mean", 0.1}}).is_ok());
    REQUIRE(log.append({{"step", 1}, {"reward_mean", 0.2}}).is_ok());
  }
  const std::string torn = "{\"step\": 2, \"reward_me";
  append_raw(path, torn);  // a crash mid-write
  {
    // A reader of the torn file reports the last line and keeps the rest.
    std::vector<MetricsLineError> errors;
    auto r = MetricsLog::read_all(path, &errors);
    REQUIRE(r.is_ok());
    CHECK(r->size() == 2);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].line == 3);
    CHECK(errors[0].message.find("torn") != std::string::npos);
  }
  MetricsLog log;
  REQUIRE(log.open(path).is_ok());
  CHECK(log.torn_bytes_dropped() == torn.size());
  REQUIRE(log.append({{"step", 2}, {"reward_mean", 0.3}}).is_ok());
  REQUIRE(log.close().is_ok());
  std::vector<MetricsLineError> errors;
  auto r = MetricsLog::read_all(path, &errors);
  REQUIRE(r.is_ok());
  CHECK(errors.empty());
  REQUIRE(r->size() == 3);
  for (int s = 0; s < 3; ++s) CHECK((*r)[s]["step"] == s);

  // A file that is nothing but a torn line becomes empty.
  const std::string only = path_join(dir, "only_torn.jsonl");
  append_raw(only, "{\"step\": 0");
  MetricsLog l2;
  REQUIRE(l2.open(only).is_ok());
  CHECK(l2.torn_bytes_dropped() == 10);
  REQUIRE(l2.close().is_ok());
  CHECK(slurp(only).empty());
}

TEST_CASE("MetricsLog: appends from several threads never interleave within a line") {
  const std::string dir = fresh_dir("threads");
  const std::string path = path_join(dir, "metrics.jsonl");
  MetricsLog log(MetricsLogOptions{.fsync_every_lines = 0, .fsync_interval_s = 0});
  REQUIRE(log.open(path).is_ok());
  constexpr int kThreads = 4, kEach = 50;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&log, t] {
      for (int i = 0; i < kEach; ++i)
        CHECK(log.append({{"step", t * kEach + i}, {"pad", std::string(size_t(100 + 37 * i), 'x')}}).is_ok());
    });
  for (auto& t : ts) t.join();
  REQUIRE(log.close().is_ok());
  std::vector<MetricsLineError> errors;
  auto r = MetricsLog::read_all(path, &errors);
  REQUIRE(r.is_ok());
  CHECK(errors.empty());
  REQUIRE(r->size() == size_t(kThreads * kEach));
  std::vector<int> seen(kThreads * kEach, 0);
  for (const json& j : *r) seen.at(j["step"].get<size_t>())++;
  CHECK(std::count(seen.begin(), seen.end(), 1) == kThreads * kEach);
}

TEST_CASE("MetricsLog::read_all skips bad lines and reports their numbers") {
  const std::string dir = fresh_dir("bad");
  const std::string path = path_join(dir, "metrics.jsonl");
  append_raw(path,
             "{\"step\": 0}\n"        // 1
             "not json at all\n"      // 2
             "\n"                     // 3: blank, skipped silently
             "[1, 2, 3]\n"            // 4: JSON but not an object
             "{\"step\": 1}\n"        // 5
             "{\"step\": 2, \"x\":\n"  // 6: truncated
             "{\"step\": 3}");        // 7: unterminated but complete: kept
  std::vector<MetricsLineError> errors;
  auto r = MetricsLog::read_all(path, &errors);
  REQUIRE(r.is_ok());
  REQUIRE(r->size() == 3);
  CHECK((*r)[0]["step"] == 0);
  CHECK((*r)[1]["step"] == 1);
  CHECK((*r)[2]["step"] == 3);
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].line == 2);
  CHECK(errors[1].line == 4);
  CHECK(errors[1].message.find("object") != std::string::npos);
  CHECK(errors[2].line == 6);
}

TEST_CASE("ProgressLine shows step, reward, accuracy, tokens/s, staleness, dropped") {
  json r = {{"step", 120},          {"reward_mean", 0.5321},     {"reward_shaped_mean", 0.41}, {"eval_accuracy", 0.412},
            {"gen_tokens_per_s", 1250}, {"train_tokens_per_s", 3400}, {"staleness_mean", 0.8},
            {"staleness_max", 2},   {"dropped_fraction", 0.125}};
  CHECK(ProgressLine::format(r) ==
        "step 120 | reward 0.532 | reward_shaped 0.410 | acc 41.2% | gen 1.25k tok/s | train 3.40k tok/s | stale 0.8 (max 2) | "
        "dropped_before_replay 12.5%");
  // Absent metrics are left out; staleness comes from the histogram when only it is given.
  CHECK(ProgressLine::format({{"step", 3}, {"staleness_hist", {1, 2, 1, 0}}}) == "step 3 | stale 1.0 (max 2)");
  CHECK(ProgressLine::format({{"step", 3}, {"reward_mean", nullptr}}) == "step 3");
  CHECK(ProgressLine::format(json::array()).empty());

  // update() keeps sparse metrics until they are measured again; null clears one.
  ProgressLine p;
  CHECK(p.update({{"step", 4}, {"reward_mean", 0.5}, {"eval_accuracy", 0.25}}) ==
        "step 4 | reward 0.500 | acc 25.0%");
  CHECK(p.update({{"step", 5}}) == "step 5 | reward 0.500 | acc 25.0%");
  CHECK(p.update({{"eval_accuracy", nullptr}, {"reward_mean", 1}}) == "step 5 | reward 1.000");
  CHECK(p.update(json::array()) == "step 5 | reward 1.000");
  CHECK(ProgressLine::for_tty("step 5") == "\rstep 5\x1b[K");
}

TEST_CASE("nice_ticks and tick_labels") {
  auto t = nice_ticks(0.03, 0.97, 6);
  CHECK(t.front() <= 0.03);
  CHECK(t.back() >= 0.97);
  REQUIRE(t.size() == 6);
  for (size_t i = 0; i < t.size(); ++i) CHECK(t[i] == doctest::Approx(0.2 * double(i)));
  CHECK(tick_labels(t) == std::vector<std::string>{"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"});
  auto s = nice_ticks(0, 9, 8, /*integer=*/true);
  CHECK(s.front() == 0);
  CHECK(s.back() >= 9);
  auto one = nice_ticks(5, 5, 6, /*integer=*/true);  // one step: widened, integer spacing
  CHECK(one.size() >= 2);
  CHECK(one.front() < 5);
  CHECK(one.back() > 5);
  CHECK(one[1] - one[0] >= 1);
  CHECK(tick_labels(nice_ticks(0, 2.5e6, 6)) == std::vector<std::string>{"0", "1M", "2M", "3M"});
  CHECK(tick_labels({0, 500000, 1000000}) == std::vector<std::string>{"0", "0.5M", "1.0M"});
  CHECK(tick_labels({0, 5000, 10000, 15000}) == std::vector<std::string>{"0", "5k", "10k", "15k"});
  CHECK(tick_labels({100, 150, 200}) == std::vector<std::string>{"100", "150", "200"});
  CHECK(tick_labels({0.98, 0.99, 1.0}) == std::vector<std::string>{"0.98", "0.99", "1.00"});
  CHECK(tick_labels({-1, 0, 1}) == std::vector<std::string>{"-1", "0", "1"});
  CHECK(nice_ticks(NAN, 1) == std::vector<double>{0, 1});
}

TEST_CASE("series_points: sorted by step, missing and non-finite values skipped, later step wins") {
  std::vector<json> rs = {{{"step", 2}, {"v", 2.0}}, {{"step", 0}, {"v", 0.0}}, {{"v", 9.0}},
                          {{"step", 1}, {"v", nullptr}}, {{"step", 3}, {"v", "str"}},
                          {{"step", 2}, {"v", 2.5}}};  // a resumed run logs step 2 again
  auto p = series_points(rs, "v");
  REQUIRE(p.size() == 2);
  CHECK(p[0].x == 0);
  CHECK(p[1].x == 2);
  CHECK(p[1].y == 2.5);
}

TEST_CASE("render_plots writes one SVG per series with data, plus plots.html") {
  const std::string dir = fresh_dir("plots");
  const std::string out = path_join(dir, "plots");
  // A stale chart from an earlier render must not survive when its series has no data.
  REQUIRE(make_dirs(out).is_ok());
  REQUIRE(write_file(path_join(out, "entropy_mean.svg"), "<svg>stale</svg>").is_ok());
  std::vector<json> rs = demo_records();
  for (json& r : rs) r.erase("entropy_mean");
  REQUIRE(render_plots(rs, out).is_ok());

  const std::string reward = slurp(path_join(out, "reward_mean.svg"));
  CHECK(reward.rfind("<svg", 0) == 0);
  CHECK(reward.find("</svg>") != std::string::npos);
  CHECK(reward.find("<title>Reward") != std::string::npos);
  CHECK(polyline_points(reward, "reward_mean") == 9);  // step 4 is NaN
  CHECK(count(reward, "<polyline") == 1);
  CHECK(count(reward, "<text") > 10);  // title, axis label, tick labels

  const std::string length = slurp(path_join(out, "length.svg"));
  CHECK(polyline_points(length, "length_mean") == 10);
  CHECK(polyline_points(length, "length_p99") == 10);
  CHECK(length.find(">length_p99</text>") != std::string::npos);  // legend

  CHECK(polyline_points(slurp(path_join(out, "eval_accuracy.svg")), "eval_accuracy") == 2);
  CHECK(polyline_points(slurp(path_join(out, "is_clip_fraction.svg")), "is_clip_fraction") == 10);
  CHECK(polyline_points(slurp(path_join(out, "train_infer_pearson.svg")), "train_infer_pearson") == 10);
  CHECK(!path_exists(path_join(out, "entropy_mean.svg")));

  const std::string html = slurp(path_join(out, "plots.html"));
  CHECK(html.find("<img src=\"reward_mean.svg\"") != std::string::npos);
  CHECK(html.find("entropy_mean.svg") == std::string::npos);
  CHECK(html.find("m1rl run summary") != std::string::npos);

  // Nothing to plot: no charts, an index that says so.
  const std::string empty = path_join(dir, "empty");
  REQUIRE(render_plots({}, empty).is_ok());
  CHECK(list_dir(empty) == std::vector<std::string>{"plots.html"});
  // Every polyline coordinate lies inside the SVG canvas.
  for (const std::string& f : list_dir(out)) {
    if (f.size() < 4 || f.substr(f.size() - 4) != ".svg") continue;
    const std::string svg = slurp(path_join(out, f));
    for (size_t at = svg.find("points=\""); at != std::string::npos; at = svg.find("points=\"", at + 1)) {
      const std::string pts = svg.substr(at + 8, svg.find('"', at + 8) - at - 8);
      size_t pos = 0;
      while (pos < pts.size()) {
        const size_t comma = pts.find(',', pos), sp = pts.find(' ', pos);
        const double x = std::stod(pts.substr(pos, comma - pos));
        const double y = std::stod(pts.substr(comma + 1, sp - comma - 1));
        CHECK(x >= 0);
        CHECK(x <= 720);
        CHECK(y >= 0);
        CHECK(y <= 400);
        pos = sp == std::string::npos ? pts.size() : sp + 1;
      }
    }
  }
}

TEST_CASE("render_svg_chart marks an empty chart and escapes text") {
  const std::string svg = render_svg_chart("a < b & c", "step", {{"k", {}}});
  CHECK(svg.rfind("<svg", 0) == 0);
  CHECK(svg.find("no data") != std::string::npos);
  CHECK(svg.find("a &lt; b &amp; c") != std::string::npos);
  CHECK(svg.find("<polyline") == std::string::npos);
  const std::string one = render_svg_chart("t", "step", {{"k", {{3, 0.5}}}});
  CHECK(polyline_points(one, "k") == 1);
  CHECK(count(one, "<circle") == 1);
}

TEST_CASE("summary: first, last, best, steps and wall time") {
  const std::vector<json> rs = demo_records();
  const json s = summary_json(rs);
  CHECK(s["records"] == 10);
  CHECK(s["steps"]["count"] == 10);
  CHECK(s["steps"]["first"] == 0);
  CHECK(s["steps"]["last"] == 9);
  CHECK(s["wall_time_s"].get<double>() == doctest::Approx(125.0));
  const json& reward = s["series"]["reward_mean"];
  CHECK(reward["points"] == 9);
  CHECK(reward["first"]["value"].get<double>() == doctest::Approx(0.0));
  CHECK(reward["last"]["value"].get<double>() == doctest::Approx(0.9));
  CHECK(reward["best"]["value"].get<double>() == doctest::Approx(0.9));
  CHECK(reward["best"]["step"] == 9);
  const json& acc = s["series"]["eval_accuracy"];
  CHECK(acc["points"] == 2);
  CHECK(acc["first"]["step"] == 4);
  CHECK(acc["best"]["value"].get<double>() == doctest::Approx(0.4));
  const json& clip = s["series"]["is_clip_fraction"];
  CHECK(clip["better"] == "lower");
  CHECK(clip["best"]["step"] == 9);
  const json& ent = s["series"]["entropy_mean"];
  CHECK(!ent.contains("best"));
  CHECK(ent["points"] == 9);
  CHECK(ent["max"]["value"].get<double>() == doctest::Approx(1.5));
  CHECK(ent["min"]["step"] == 9);
  const json& pear = s["series"]["train_infer_pearson"];
  CHECK(pear["best"]["step"] == 2);  // first step reaching the max
  CHECK(!s["series"].contains("grad_norm"));

  const std::string text = summarize(rs);
  CHECK(text.find("steps 0..9 (10 distinct)") != std::string::npos);
  CHECK(text.find("wall time 2m 05s") != std::string::npos);
  CHECK(text.find("reward_mean") != std::string::npos);
  CHECK(text.find("first 0 (step 0), last 0.9 (step 9), best 0.9 (step 9)") != std::string::npos);
  CHECK(text.find("length_mean") != std::string::npos);
  CHECK(text.find("min 100 (step 0), max 190 (step 9)") != std::string::npos);
  CHECK(summarize({}).find("no metrics") != std::string::npos);

  const std::string dir = fresh_dir("summary");
  REQUIRE(write_summary(rs, dir).is_ok());
  CHECK(slurp(path_join(dir, "summary.txt")) == text);
  CHECK(json::parse(slurp(path_join(dir, "summary.json"))) == s);
}

TEST_CASE("write_run_report: metrics.jsonl to plots/ and summary") {
  const std::string run = fresh_dir("report");
  {
    MetricsLog log;
    REQUIRE(log.open(path_join(run, "metrics.jsonl")).is_ok());
    for (const json& r : demo_records()) REQUIRE(log.append(r).is_ok());
  }
  append_raw(path_join(run, "metrics.jsonl"), "garbage\n");
  REQUIRE(write_run_report(run).is_ok());
  CHECK(path_exists(path_join(run, "plots/reward_mean.svg")));
  CHECK(path_exists(path_join(run, "plots/entropy_mean.svg")));
  CHECK(path_exists(path_join(run, "plots/plots.html")));
  CHECK(json::parse(slurp(path_join(run, "summary.json")))["series"]["reward_mean"]["points"] == 9);
  CHECK(!write_run_report(path_join(run, "absent")).is_ok());
}
