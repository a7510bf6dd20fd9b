#include "actors/metrics/plots.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "actors/metrics/metrics_log.h"
#include "base/file.h"
#include "base/log.h"

namespace m1 {

using nlohmann::json;

namespace {

// Which way a series improves; kNone when neither (lengths, entropy, gradient norm).
enum class Better { kNone, kHigher, kLower };

struct ChartSpec {
  const char* file;   // without ".svg"
  const char* title;
  std::vector<const char*> keys;
};

const std::vector<ChartSpec>& chart_specs() {
  namespace k = metric_keys;
  static const std::vector<ChartSpec> specs = {
      {"reward_mean", "Reward (mean over responses)", {k::kRewardMean}},
      {"eval_accuracy", "Held-out accuracy", {k::kEvalAccuracy}},
      {"length", "Response length (tokens)", {k::kLengthMean, k::kLengthP99}},
      {"entropy_mean", "Entropy (nats per token)", {k::kEntropyMean}},
      {"is_clip_fraction", "IS ratio: fraction of tokens clipped", {k::kIsClipFraction}},
      {"train_infer_pearson", "Train/inference token probability correlation (Pearson)",
       {k::kTrainInferPearson}},
  };
  return specs;
}

struct SummarySpec {
  const char* key;
  Better better;
};

const std::vector<SummarySpec>& summary_specs() {
  namespace k = metric_keys;
  static const std::vector<SummarySpec> specs = {
      {k::kRewardMean, Better::kHigher},      {k::kEvalAccuracy, Better::kHigher},
      {k::kLengthMean, Better::kNone},        {k::kLengthP99, Better::kNone},
      {k::kEntropyMean, Better::kNone},       {k::kIsClipFraction, Better::kLower},
      {k::kTrainInferPearson, Better::kHigher}, {k::kDroppedFraction, Better::kLower},
      {k::kGradNorm, Better::kNone},          {k::kGenTokensPerS, Better::kHigher},
      {k::kTrainTokensPerS, Better::kHigher}, {k::kStepTime, Better::kLower},
      {k::kGenrmLengthBias, Better::kNone},
  };
  return specs;
}

std::optional<double> finite_number(const json& r, const char* key) {
  auto it = r.find(key);
  if (it == r.end() || !it->is_number()) return std::nullopt;
  const double v = it->get<double>();
  if (!std::isfinite(v)) return std::nullopt;
  return v;
}

double nice_num(double x, bool round) {
  const double e = std::floor(std::log10(x));
  const double p = std::pow(10.0, e);
  const double f = x / p;
  double n;
  if (round) n = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  else n = f <= 1 + 1e-9 ? 1 : f <= 2 + 1e-9 ? 2 : f <= 5 + 1e-9 ? 5 : 10;  // 1e-9: float noise
  return n * p;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

// Value with up to 4 significant digits and no exponent for ordinary magnitudes.
std::string fmt_value(double v) {
  if ((v == std::floor(v) || std::fabs(v) >= 1e4) && std::fabs(v) < 1e12) return fmt::format("{:.0f}", v);
  return fmt::format("{:.4g}", v);
}

std::string fmt_duration(double s) {
  const long total = long(std::llround(s));
  const long h = total / 3600, m = (total % 3600) / 60, sec = total % 60;
  if (h > 0) return fmt::format("{}h {:02}m {:02}s", h, m, sec);
  if (m > 0) return fmt::format("{}m {:02}s", m, sec);
  return fmt::format("{:.1f}s", s);
}

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"};

}  // namespace

std::vector<PlotPoint> series_points(const std::vector<json>& records, const std::string& key) {
  std::map<double, double> by_step;  // later records overwrite earlier ones
  for (const json& r : records) {
    if (!r.is_object()) continue;
    auto step = finite_number(r, metric_keys::kStep);
    auto v = finite_number(r, key.c_str());
    if (step && v) by_step[*step] = *v;
  }
  std::vector<PlotPoint> out;
  out.reserve(by_step.size());
  for (auto [x, y] : by_step) out.push_back({x, y});
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int target, bool integer) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {0, 1};
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo <= std::max(std::fabs(lo), std::fabs(hi)) * 1e-12) {
    const double d = lo != 0 ? std::fabs(lo) * 0.1 : 1.0;
    lo -= d;
    hi += d;
  }
  target = std::max(target, 2);
  const double range = nice_num(hi - lo, false);
  double step = nice_num(range / (target - 1), true);
  if (integer) step = std::max(step, 1.0);
  const double start = std::floor(lo / step) * step;
  const double end = std::ceil(hi / step) * step;
  std::vector<double> ticks;
  const int n = int(std::llround((end - start) / step));
  for (int i = 0; i <= n; ++i) {
    double v = start + i * step;
    if (std::fabs(v) < step * 1e-9) v = 0;  // no "-0" or 1e-17 labels
    ticks.push_back(v);
  }
  return ticks;
}

std::vector<std::string> tick_labels(const std::vector<double>& ticks) {
  std::vector<std::string> out;
  if (ticks.empty()) return out;
  double max_abs = 0;
  for (double t : ticks) max_abs = std::max(max_abs, std::fabs(t));
  const double step = ticks.size() > 1 ? std::fabs(ticks[1] - ticks[0]) : 1.0;
  double scale = 1;
  const char* suffix = "";
  if (max_abs >= 1e9) scale = 1e9, suffix = "G";
  else if (max_abs >= 1e6) scale = 1e6, suffix = "M";
  else if (max_abs >= 1e4) scale = 1e3, suffix = "k";
  const double s = step / scale;
  const int decimals = s >= 1 || s <= 0 ? 0 : std::min(9, int(std::ceil(-std::log10(s) - 1e-9)));
  for (double t : ticks)
    out.push_back(t == 0 && *suffix ? "0" : fmt::format("{:.{}f}{}", t / scale, decimals, suffix));
  return out;
}

std::string render_svg_chart(const std::string& title, const std::string& x_label,
                             const std::vector<PlotSeries>& series) {
  constexpr double kW = 720, kH = 400, kL = 76, kR = 24, kT = 56, kB = 56;
  constexpr double kPw = kW - kL - kR, kPh = kH - kT - kB;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  size_t n_points = 0;
  for (const PlotSeries& s : series)
    for (const PlotPoint& p : s.points) {
      xlo = std::min(xlo, p.x), xhi = std::max(xhi, p.x);
      ylo = std::min(ylo, p.y), yhi = std::max(yhi, p.y);
      ++n_points;
    }
  if (n_points == 0) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  const std::vector<double> xt = nice_ticks(xlo, xhi, 8, /*integer=*/true);
  const std::vector<double> yt = nice_ticks(ylo, yhi, 6);
  const double x0 = xt.front(), x1 = xt.back(), y0 = yt.front(), y1 = yt.back();
  auto px = [&](double x) { return kL + (x - x0) / (x1 - x0) * kPw; };
  auto py = [&](double y) { return kT + kPh - (y - y0) / (y1 - y0) * kPh; };

  std::string o;
  o += fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n",
      kW, kH);
  o += fmt::format("<title>{}</title>\n", xml_escape(title));
  o += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"white\"/>\n", kW, kH);
  o += fmt::format("<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
                   kW / 2, xml_escape(title));
  // Grid and tick labels.
  const std::vector<std::string> xl = tick_labels(xt), yl = tick_labels(yt);
  o += "<g stroke=\"#e5e5e5\" stroke-width=\"1\">\n";
  for (double t : xt) o += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\"/>\n", px(t), kT, kT + kPh);
  for (double t : yt) o += fmt::format("<line x1=\"{1}\" y1=\"{0:.1f}\" x2=\"{2}\" y2=\"{0:.1f}\"/>\n", py(t), kL, kL + kPw);
  o += "</g>\n<g fill=\"#333\">\n";
  for (size_t i = 0; i < xt.size(); ++i)
    o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", px(xt[i]), kT + kPh + 18, xl[i]);
  for (size_t i = 0; i < yt.size(); ++i)
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", kL - 8, py(yt[i]) + 4, yl[i]);
  o += "</g>\n";
  // Axes.
  o += fmt::format("<g stroke=\"#333\" stroke-width=\"1\"><line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\"/>"
                   "<line x1=\"{0}\" y1=\"{2}\" x2=\"{3}\" y2=\"{2}\"/></g>\n",
                   kL, kT, kT + kPh, kL + kPw);
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}</text>\n", kL + kPw / 2,
                   kH - 12, xml_escape(x_label));
  if (n_points == 0)
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#999\">no data</text>\n",
                     kL + kPw / 2, kT + kPh / 2);
  // Series.
  size_t shown = 0;
  for (size_t si = 0; si < series.size(); ++si) {
    const PlotSeries& s = series[si];
    if (s.points.empty()) continue;
    const char* color = kColors[si % std::size(kColors)];
    o += fmt::format("<polyline class=\"series\" data-key=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" "
                     "stroke-linejoin=\"round\" points=\"",
                     xml_escape(s.label), color);
    for (size_t i = 0; i < s.points.size(); ++i)
      o += fmt::format("{}{:.1f},{:.1f}", i ? " " : "", px(s.points[i].x), py(s.points[i].y));
    o += "\"/>\n";
    if (s.points.size() <= 60) {
      o += fmt::format("<g fill=\"{}\">", color);
      for (const PlotPoint& p : s.points) o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\"/>", px(p.x), py(p.y));
      o += "</g>\n";
    }
    if (series.size() > 1) {  // legend: one row between the title and the plot, left to right
      const double lx = kL + 140 * double(shown), ly = kT - 14;
      o += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"{3}\" "
                       "stroke-width=\"2\"/><text x=\"{4:.1f}\" y=\"{5:.1f}\" fill=\"#333\">{6}</text>\n",
                       lx, ly, lx + 20, color, lx + 26, ly + 4, xml_escape(s.label));
    }
    ++shown;
  }
  o += "</svg>\n";
  return o;
}

Status render_plots(const std::vector<json>& records, const std::string& out_dir) {
  M1_RETURN_IF_ERROR(make_dirs(out_dir));
  std::vector<std::string> written;
  for (const ChartSpec& spec : chart_specs()) {
    std::vector<PlotSeries> series;
    size_t n = 0;
    for (const char* key : spec.keys) {
      series.push_back({key, series_points(records, key)});
      n += series.back().points.size();
    }
    const std::string path = path_join(out_dir, std::string(spec.file) + ".svg");
    if (n == 0) {
      if (path_exists(path)) M1_RETURN_IF_ERROR(remove_all(path));
      continue;
    }
    M1_RETURN_IF_ERROR(write_file_atomic(path, render_svg_chart(spec.title, "step", series)));
    written.push_back(std::string(spec.file) + ".svg");
  }
  std::string html =
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>m1rl run metrics</title>\n"
      "<style>body{font-family:sans-serif;margin:16px}.grid{display:grid;"
      "grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:12px}"
      ".grid img{width:100%;border:1px solid #ddd}</style></head><body>\n"
      "<h1>m1rl run metrics</h1>\n<div class=\"grid\">\n";
  for (const std::string& f : written) html += fmt::format("<img src=\"{0}\" alt=\"{0}\">\n", f);
  if (written.empty()) html += "<p>no data</p>\n";
  html += "</div>\n<pre>" + xml_escape(summarize(records)) + "</pre>\n</body></html>\n";
  return write_file_atomic(path_join(out_dir, "plots.html"), html);
}

json summary_json(const std::vector<json>& records) {
  namespace k = metric_keys;
  json out = json::object();
  out["records"] = records.size();
  std::map<double, int> steps;
  std::optional<double> wall;
  for (const json& r : records) {
    if (!r.is_object()) continue;
    if (auto s = finite_number(r, k::kStep)) steps[*s] = 1;
    if (auto t = finite_number(r, k::kTime)) wall = std::max(wall.value_or(*t), *t);
  }
  if (!steps.empty())
    out["steps"] = {{"count", steps.size()}, {"first", steps.begin()->first}, {"last", steps.rbegin()->first}};
  if (wall) out["wall_time_s"] = *wall;
  json series = json::object();
  for (const SummarySpec& spec : summary_specs()) {
    const std::vector<PlotPoint> pts = series_points(records, spec.key);
    if (pts.empty()) continue;
    auto at = [](const PlotPoint& p) { return json{{"step", p.x}, {"value", p.y}}; };
    // The first point reaching the extreme (an earlier step wins ties).
    const PlotPoint* lo = &pts[0];
    const PlotPoint* hi = &pts[0];
    for (const PlotPoint& p : pts) {
      if (p.y < lo->y) lo = &p;
      if (p.y > hi->y) hi = &p;
    }
    json s = {{"points", pts.size()}, {"first", at(pts.front())}, {"last", at(pts.back())},
              {"min", at(*lo)}, {"max", at(*hi)}};
    if (spec.better == Better::kHigher) s["best"] = at(*hi), s["better"] = "higher";
    if (spec.better == Better::kLower) s["best"] = at(*lo), s["better"] = "lower";
    series[spec.key] = std::move(s);
  }
  out["series"] = std::move(series);
  return out;
}

std::string summarize(const std::vector<json>& records) {
  const json s = summary_json(records);
  std::string o = "m1rl run summary\n";
  if (!s.contains("steps")) {
    o += fmt::format("{} records, none with a step: no metrics to summarize\n", records.size());
    return o;
  }
  const json& st = s.at("steps");
  o += fmt::format("{} records, steps {}..{} ({} distinct)", records.size(), fmt_value(st.at("first").get<double>()),
                   fmt_value(st.at("last").get<double>()), st.at("count").get<size_t>());
  if (s.contains("wall_time_s")) o += ", wall time " + fmt_duration(s.at("wall_time_s").get<double>());
  o += "\n";
  auto at = [](const json& p) {
    return fmt::format("{} (step {})", fmt_value(p.at("value").get<double>()), fmt_value(p.at("step").get<double>()));
  };
  size_t width = 0;
  const json& all = s.at("series");
  for (auto it = all.begin(); it != all.end(); ++it) width = std::max(width, it.key().size());
  for (const SummarySpec& spec : summary_specs()) {  // table order, not the JSON's sorted order
    if (!all.contains(spec.key)) continue;
    const json& v = all.at(spec.key);
    o += fmt::format("  {:<{}}  first {}, last {}", spec.key, width, at(v.at("first")), at(v.at("last")));
    if (v.contains("best")) o += fmt::format(", best {}", at(v.at("best")));
    else o += fmt::format(", min {}, max {}", at(v.at("min")), at(v.at("max")));
    o += "\n";
  }
  return o;
}

Status write_summary(const std::vector<json>& records, const std::string& out_dir) {
  M1_RETURN_IF_ERROR(make_dirs(out_dir));
  M1_RETURN_IF_ERROR(write_file_atomic(path_join(out_dir, "summary.txt"), summarize(records)));
  return write_file_atomic(path_join(out_dir, "summary.json"), summary_json(records).dump(2) + "\n");
}

Status write_run_report(const std::string& run_dir) {
  const std::string metrics = path_join(run_dir, "metrics.jsonl");
  std::vector<MetricsLineError> bad;
  auto records = MetricsLog::read_all(metrics, &bad);
  if (!records.is_ok()) return records.status().with_context("run report");
  if (!bad.empty()) log_warn("{}: {} bad line(s) skipped in the run report", metrics, bad.size());
  M1_RETURN_IF_ERROR(render_plots(*records, path_join(run_dir, "plots")));
  return write_summary(*records, run_dir);
}

}  // namespace m1
