// End-of-run report from the records of RUN/metrics.jsonl (actors/metrics/metrics_log.h): one
// self-contained SVG chart per health series over learner steps, an HTML index of them, and a
// short summary (text and JSON). Everything here is a pure function of the records except the
// writers, which replace their files atomically (write PATH.tmp, fsync, rename).
//
// Charts (x = "step"; a chart whose series have no points gets no file, and a stale file of that
// name from an earlier render is removed):
//   reward_mean.svg          reward_mean
//   eval_accuracy.svg        eval_accuracy
//   length.svg               length_mean and length_p99
//   entropy_mean.svg         entropy_mean
//   is_clip_fraction.svg     is_clip_fraction
//   train_infer_pearson.svg  train_infer_pearson
// plus plots.html, a grid of the charts written with the summary text below.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace m1 {

struct PlotPoint {
  double x = 0;
  double y = 0;
};

struct PlotSeries {
  std::string label;  // the metric key, shown in the legend when a chart has several series
  std::vector<PlotPoint> points;
};

// (step, value) of KEY over RECORDS, sorted by step. Records without a numeric "step" or without
// a finite numeric KEY are skipped; when records share a step the later one wins (a resumed run
// logs again the steps after its checkpoint).
std::vector<PlotPoint> series_points(const std::vector<nlohmann::json>& records, const std::string& key);

// Axis ticks at multiples of 1, 2 or 5 × 10^k, about TARGET of them (REQUIRES: TARGET >= 2), the
// first <= LO and the last >= HI. A flat range (LO == HI) is widened around its value. INTEGER
// keeps the spacing >= 1 (for step axes). Non-finite input gives {0, 1}.
std::vector<double> nice_ticks(double lo, double hi, int target = 6, bool integer = false);
// Labels for TICKS (as from nice_ticks): just enough decimals for their spacing, with a k/M/G
// suffix on large values ("0.25", "1500", "2.5k", "1.2M").
std::vector<std::string> tick_labels(const std::vector<double>& ticks);

// A complete SVG document (starts with "<svg"): title, axes with tick labels and grid, one
// <polyline class="series" data-key="LABEL" points="x,y ..."> per non-empty series (one x,y pair
// per point), markers when points are few, a legend when there are several series.
std::string render_svg_chart(const std::string& title, const std::string& x_label,
                             const std::vector<PlotSeries>& series);

// Writes the charts listed above and plots.html into OUT_DIR (created if absent).
Status render_plots(const std::vector<nlohmann::json>& records, const std::string& out_dir);

// Summary of a run: record count, step range, wall time (max "time_s", when present), and for
// each summarized series present its first, last, min, max and best (the max or min, for series
// with a better direction) values with their steps. Series: the charted ones plus
// dropped_fraction, grad_norm, gen/train tokens per second, step_time_s, genrm_length_bias.
nlohmann::json summary_json(const std::vector<nlohmann::json>& records);
// The same as a few lines of text.
std::string summarize(const std::vector<nlohmann::json>& records);
// Writes OUT_DIR/summary.txt and OUT_DIR/summary.json (OUT_DIR created if absent).
Status write_summary(const std::vector<nlohmann::json>& records, const std::string& out_dir);

// The whole end-of-run report of RUN_DIR: reads RUN_DIR/metrics.jsonl (bad lines skipped with a
// warning), renders the charts into RUN_DIR/plots/ and writes RUN_DIR/summary.{txt,json}.
Status write_run_report(const std::string& run_dir);

}  // namespace m1
