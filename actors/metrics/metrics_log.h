// RUN/metrics.jsonl: the run's health metrics (docs/rl.md "Health metrics every run reports"), one JSON
// object per line, one line per record (usually one per learner step, plus sparse records such as
// held-out evaluations). The file is append-only and stays valid JSONL across crashes: a line is
// written with one write() of "<json>\n"; opening the file again truncates a torn last line (bytes
// after the last '\n'), and a failed append truncates its own partial bytes.
//
// Durability: append() returns once the line is in the OS page cache (it survives a process
// crash); it survives a power loss once fsynced, which happens every `fsync_every_lines` lines,
// every `fsync_interval_s` seconds, on sync() and on close().
//
// TensorBoard: unless options.tensorboard is false, open(PATH) also starts a new events file in
// PARENT(PATH)/tb/ (actors/metrics/tb_writer.h) and every record appended to PATH is written there
// too, as one Event, flushed. That file is a view, never durable and never read back: when it cannot
// be created or written, MetricsLog warns once, stops writing it, and the metrics log goes on.
//
// Ownership and threads: MetricsLog owns its file descriptor; it is movable, not copyable.
// append()/sync()/close() may be called from several threads (an internal mutex orders lines);
// open() must not race with them. read_all() shares no state; ProgressLine is a plain value.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/metrics/tb_writer.h"
#include "base/status.h"

namespace m1 {

// Canonical keys of a metrics record. Every value is a JSON number unless noted; a metric that
// was not measured this step is left out (never written as 0). NaN/Inf are written as null.
namespace metric_keys {
inline constexpr const char* kStep = "step";                    // learner step (integer, >= 0)
inline constexpr const char* kTime = "time_s";                  // seconds since the run first started
inline constexpr const char* kStepTime = "step_time_s";         // seconds this step took
inline constexpr const char* kRewardMean = "reward_mean";       // the judges' reward over all
                                                                // responses of the step (no
                                                                // overlong or format penalty)
inline constexpr const char* kRewardShapedMean = "reward_shaped_mean";  // the shaped reward R
                                                                // (judge + overlong + format
                                                                // penalty): what advantages use
                                                                // and replay stores
inline constexpr const char* kRewardStd = "reward_std";
inline constexpr const char* kRewardByTask = "reward_by_task";  // {"<task>": mean} or
                                                                // {"<task>": {"mean": x, "std": y}}
inline constexpr const char* kEvalAccuracy = "eval_accuracy";   // held-out accuracy in [0, 1] of
                                                                // the weights published at this
                                                                // step (time_s), measured by the
                                                                // evaluator actor in eval_s
                                                                // seconds; instead eval_skipped:
                                                                // true (it was busy) or
                                                                // eval_failed: true
inline constexpr const char* kLengthMean = "length_mean";       // response length, tokens
inline constexpr const char* kLengthP99 = "length_p99";         // 99th percentile, tokens
inline constexpr const char* kFinishReasons = "finish_reasons";  // {"stop": n, "length": n, ...}
inline constexpr const char* kDroppedFraction = "dropped_fraction";  // groups the sampler dropped
                                                                     // before replay (zero variance,
                                                                     // dead letters) / groups, [0, 1];
                                                                     // never stored, so not in
                                                                     // `m1rl replay stats`, whose
                                                                     // dropped_in_replay counts
                                                                     // stored groups dropped later
inline constexpr const char* kIsRatioMean = "is_ratio_mean";    // IS ratio r = pi_train / pi_infer
inline constexpr const char* kIsRatioMax = "is_ratio_max";
inline constexpr const char* kIsClipFraction = "is_clip_fraction";  // tokens with r clipped, [0, 1]
inline constexpr const char* kEntropyMean = "entropy_mean";     // nats per token
inline constexpr const char* kGradNorm = "grad_norm";           // global L2 norm before clipping
inline constexpr const char* kTrainInferPearson = "train_infer_pearson";  // Pearson of token
                                                                          // probs, [-1, 1]
inline constexpr const char* kStalenessHist = "staleness_hist";  // [n_0, n_1, ...]: samples whose
                                                                 // policy is i steps old
inline constexpr const char* kStalenessMean = "staleness_mean";  // steps
inline constexpr const char* kStalenessMax = "staleness_max";    // steps
inline constexpr const char* kGenTokensPerS = "gen_tokens_per_s";
inline constexpr const char* kTrainTokensPerS = "train_tokens_per_s";
inline constexpr const char* kGenrmLengthBias = "genrm_length_bias";  // Pearson(GenRM reward,
                                                                      // length), [-1, 1]
}  // namespace metric_keys

struct MetricsLogOptions {
  // fsync after this many appended lines (0: never by count).
  uint32_t fsync_every_lines = 0;
  // fsync when this many seconds passed since the last fsync (0: never by time).
  double fsync_interval_s = 10.0;
  // Also write each record to PARENT/tb/events.out.tfevents.<unix seconds>.<host> (see above).
  bool tensorboard = true;
};

// A line of a metrics file that could not be used, with its 1-based line number.
struct MetricsLineError {
  size_t line = 0;
  std::string message;
};

class MetricsLog {
 public:
  MetricsLog() = default;
  explicit MetricsLog(MetricsLogOptions options) : options_(options) {}
  ~MetricsLog();
  MetricsLog(MetricsLog&& other) noexcept;
  MetricsLog& operator=(MetricsLog&& other) noexcept;
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Opens (creating if absent) PATH for appending. Closes a file already open. A torn last line
  // left by a crash (bytes after the last '\n') is truncated away; torn_bytes_dropped() says how
  // many bytes went. The parent directory must exist. With options.tensorboard, also opens a new
  // events file in PARENT/tb/ (created if absent); failing that only warns.
  Status open(const std::string& path);
  // Appends RECORD (REQUIRES: a JSON object, else an error) as one line. On a write error the
  // partial line is truncated away and the error names the path. Once the line is written, RECORD
  // also goes to the TensorBoard file when one is open (its failure is a warning, not an error).
  Status append(const nlohmann::json& record);
  // fsyncs the file now.
  Status sync();
  // fsyncs and closes; a no-op when not open.
  Status close();

  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  // The TensorBoard events file being written, or "" when none (disabled, or it failed).
  std::string tensorboard_path() const;
  uint64_t lines_appended() const { return lines_appended_; }  // by this object, since open()
  uint64_t torn_bytes_dropped() const { return torn_bytes_dropped_; }

  // Reads every record of PATH. Blank lines are skipped; a line that is not a JSON object is
  // skipped and reported in ERRORS (when given) and as a warning on the log, with its line number.
  // A last line without '\n' (a writer mid-append or a crash) is kept if it parses, else reported.
  // Fails only when PATH cannot be read.
  static Result<std::vector<nlohmann::json>> read_all(const std::string& path,
                                                      std::vector<MetricsLineError>* errors = nullptr);

 private:
  Status sync_locked();
  Status close_locked();
  void tensorboard_write_locked(const nlohmann::json& record);
  void tensorboard_close_locked();

  MetricsLogOptions options_;
  std::unique_ptr<std::mutex> mu_ = std::make_unique<std::mutex>();
  int fd_ = -1;
  std::string path_;
  uint64_t size_ = 0;  // bytes in the file: every line appended so far is complete
  uint64_t lines_appended_ = 0;
  uint64_t lines_since_sync_ = 0;
  uint64_t torn_bytes_dropped_ = 0;
  std::chrono::steady_clock::time_point last_sync_{};
  std::unique_ptr<TbWriter> tb_;  // null when TensorBoard output is off or failed
};

// The live one-line status shown while a run trains, e.g.
//   step 120 | reward 0.532 | acc 41.2% | gen 1.25k tok/s | train 3.40k tok/s | stale 0.8 (max 2) | dropped 12.5%
// Fields whose metric is absent are left out.
class ProgressLine {
 public:
  // Pure: the status line of one record (no "\r", no newline).
  static std::string format(const nlohmann::json& record);

  // Merges RECORD into the last known values (so sparse metrics such as eval_accuracy stay
  // shown until they are measured again; a null value clears one) and returns format() of them.
  std::string update(const nlohmann::json& record);
  // LINE ready to overwrite the previous one on a TTY: "\r" + LINE + erase-to-end-of-line.
  // Elsewhere (a log file) print LINE with a newline instead.
  static std::string for_tty(const std::string& line) { return "\r" + line + "\x1b[K"; }

  const nlohmann::json& state() const { return state_; }

 private:
  nlohmann::json state_ = nlohmann::json::object();
};

}  // namespace m1
