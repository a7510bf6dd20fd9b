#include "actors/metrics/metrics_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>

#include "actors/metrics/tb_writer.h"
#include "base/file.h"
#include "base/log.h"

namespace m1 {

using nlohmann::json;

namespace {

// Offset just past the last '\n' of the file open at FD (SIZE bytes), or 0 when it has none.
Result<uint64_t> end_of_last_line(int fd, uint64_t size, const std::string& path) {
  char buf[1 << 16];
  uint64_t end = size;
  while (end > 0) {
    const uint64_t begin = end > sizeof buf ? end - sizeof buf : 0;
    const size_t want = size_t(end - begin);
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(fd, buf + got, want - got, off_t(begin + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::errorf("{}: read failed: {}", path, std::strerror(errno));
      if (n == 0) return Status::errorf("{}: file shrank while being read", path);
      got += size_t(n);
    }
    for (size_t i = want; i > 0; --i)
      if (buf[i - 1] == '\n') return begin + i;
    end = begin;
  }
  return uint64_t{0};
}

bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

}  // namespace

MetricsLog::~MetricsLog() {
  if (fd_ >= 0) {
    Status s = close_locked();
    if (!s.is_ok()) log_warn("metrics log: {}", s.message());
  }
}

MetricsLog::MetricsLog(MetricsLog&& o) noexcept
    : options_(o.options_),
      mu_(std::move(o.mu_)),
      fd_(o.fd_),
      path_(std::move(o.path_)),
      size_(o.size_),
      lines_appended_(o.lines_appended_),
      lines_since_sync_(o.lines_since_sync_),
      torn_bytes_dropped_(o.torn_bytes_dropped_),
      last_sync_(o.last_sync_),
      tb_(std::move(o.tb_)) {
  o.fd_ = -1;
  o.mu_ = std::make_unique<std::mutex>();
}

MetricsLog& MetricsLog::operator=(MetricsLog&& o) noexcept {
  if (this == &o) return *this;
  if (fd_ >= 0) {
    Status s = close_locked();
    if (!s.is_ok()) log_warn("metrics log: {}", s.message());
  }
  options_ = o.options_;
  mu_ = std::move(o.mu_);
  fd_ = o.fd_;
  path_ = std::move(o.path_);
  size_ = o.size_;
  lines_appended_ = o.lines_appended_;
  lines_since_sync_ = o.lines_since_sync_;
  torn_bytes_dropped_ = o.torn_bytes_dropped_;
  last_sync_ = o.last_sync_;
  tb_ = std::move(o.tb_);
  o.fd_ = -1;
  o.mu_ = std::make_unique<std::mutex>();
  return *this;
}

Status MetricsLog::open(const std::string& path) {
  std::lock_guard<std::mutex> lock(*mu_);
  if (fd_ >= 0) M1_RETURN_IF_ERROR(close_locked());
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return Status::errorf("{}: cannot open metrics log: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Status s = Status::errorf("{}: fstat failed: {}", path, std::strerror(errno));
    ::close(fd);
    return s;
  }
  const uint64_t size = uint64_t(st.st_size);
  Result<uint64_t> keep = end_of_last_line(fd, size, path);
  if (!keep.is_ok()) {
    ::close(fd);
    return keep.status();
  }
  torn_bytes_dropped_ = 0;
  if (*keep < size) {
    if (::ftruncate(fd, off_t(*keep)) != 0 || ::fsync(fd) != 0) {
      Status s = Status::errorf("{}: cannot truncate torn last line at offset {}: {}", path, *keep,
                                std::strerror(errno));
      ::close(fd);
      return s;
    }
    torn_bytes_dropped_ = size - *keep;
    log_warn("{}: dropped a torn last line ({} bytes at offset {})", path, torn_bytes_dropped_, *keep);
  }
  fd_ = fd;
  path_ = path;
  size_ = *keep;
  lines_appended_ = 0;
  lines_since_sync_ = 0;
  last_sync_ = std::chrono::steady_clock::now();
  if (options_.tensorboard) {
    auto tb = std::make_unique<TbWriter>();
    Status s = tb->open(path_join(parent_dir(path), "tb"));
    if (s.is_ok()) tb_ = std::move(tb);
    else log_warn("metrics log: no TensorBoard output: {}", s.message());
  }
  return Status::ok();
}

std::string MetricsLog::tensorboard_path() const {
  std::lock_guard<std::mutex> lock(*mu_);
  return tb_ ? tb_->path() : std::string();
}

void MetricsLog::tensorboard_write_locked(const json& record) {
  if (!tb_) return;
  Status s = tb_->write(record);
  if (s.is_ok()) return;
  log_warn("metrics log: TensorBoard output stops here ({} keeps every record): {}", path_, s.message());
  tensorboard_close_locked();
}

void MetricsLog::tensorboard_close_locked() {
  if (!tb_) return;
  Status s = tb_->close();
  if (!s.is_ok()) log_warn("metrics log: {}", s.message());
  tb_.reset();
}

Status MetricsLog::append(const json& record) {
  if (!record.is_object())
    return Status::errorf("metrics record must be a JSON object, got {}", record.type_name());
  // Invalid UTF-8 in a string is replaced rather than thrown on; NaN/Inf become null.
  std::string line = record.dump(-1, ' ', false, json::error_handler_t::replace);
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(*mu_);
  if (fd_ < 0) return Status::error("metrics log: append before open()");
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status s = Status::errorf("{}: write failed at offset {}: {}", path_, size_ + done,
                                n < 0 ? std::strerror(errno) : "no progress");
      // Keep the file valid JSONL: drop the partial line (best effort; open() would too).
      if (done > 0 && ::ftruncate(fd_, off_t(size_)) != 0)
        log_warn("{}: cannot truncate partial line: {}", path_, std::strerror(errno));
      return s;
    }
    done += size_t(n);
  }
  size_ += line.size();
  ++lines_appended_;
  tensorboard_write_locked(record);
  ++lines_since_sync_;
  const bool by_count = options_.fsync_every_lines > 0 && lines_since_sync_ >= options_.fsync_every_lines;
  const bool by_time =
      options_.fsync_interval_s > 0 &&
      std::chrono::duration<double>(std::chrono::steady_clock::now() - last_sync_).count() >=
          options_.fsync_interval_s;
  if (by_count || by_time) return sync_locked();
  return Status::ok();
}

Status MetricsLog::sync() {
  std::lock_guard<std::mutex> lock(*mu_);
  return sync_locked();
}

Status MetricsLog::sync_locked() {
  if (fd_ < 0) return Status::error("metrics log: sync before open()");
  if (::fsync(fd_) != 0) return Status::errorf("{}: fsync failed: {}", path_, std::strerror(errno));
  lines_since_sync_ = 0;
  last_sync_ = std::chrono::steady_clock::now();
  return Status::ok();
}

Status MetricsLog::close() {
  std::lock_guard<std::mutex> lock(*mu_);
  return close_locked();
}

Status MetricsLog::close_locked() {
  tensorboard_close_locked();
  if (fd_ < 0) return Status::ok();
  Status s = Status::ok();
  if (::fsync(fd_) != 0) s = Status::errorf("{}: fsync failed: {}", path_, std::strerror(errno));
  if (::close(fd_) != 0 && s.is_ok()) s = Status::errorf("{}: close failed: {}", path_, std::strerror(errno));
  fd_ = -1;
  return s;
}

Result<std::vector<json>> MetricsLog::read_all(const std::string& path,
                                               std::vector<MetricsLineError>* errors) {
  M1_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::vector<json> records;
  auto report = [&](size_t line_no, std::string msg) {
    log_warn("{}:{}: skipped metrics line: {}", path, line_no, msg);
    if (errors) errors->push_back({line_no, std::move(msg)});
  };
  size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    ++line_no;
    const size_t nl = text.find('\n', pos);
    const bool terminated = nl != std::string::npos;
    const std::string line = text.substr(pos, terminated ? nl - pos : std::string::npos);
    pos = terminated ? nl + 1 : text.size();
    if (is_blank(line)) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      report(line_no, terminated ? fmt::format("not valid JSON: {}", e.what())
                                 : fmt::format("torn last line (no newline): {}", e.what()));
      continue;
    }
    if (!j.is_object()) {
      report(line_no, fmt::format("expected a JSON object, got {}", j.type_name()));
      continue;
    }
    records.push_back(std::move(j));
  }
  return records;
}

// ---- ProgressLine ----

namespace {

std::optional<double> number(const json& r, const char* key) {
  auto it = r.find(key);
  if (it == r.end() || !it->is_number()) return std::nullopt;
  const double v = it->get<double>();
  if (!std::isfinite(v)) return std::nullopt;
  return v;
}

std::string human_rate(double v) {
  if (std::fabs(v) >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (std::fabs(v) >= 1e3) return fmt::format("{:.2f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

// Staleness mean and max: from the explicit keys, else from the histogram.
void staleness(const json& r, std::optional<double>* mean, std::optional<double>* max) {
  *mean = number(r, metric_keys::kStalenessMean);
  *max = number(r, metric_keys::kStalenessMax);
  auto it = r.find(metric_keys::kStalenessHist);
  if ((*mean && *max) || it == r.end() || !it->is_array()) return;
  double total = 0, weighted = 0;
  std::optional<double> hi;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& n = (*it)[i];
    if (!n.is_number()) continue;
    const double c = n.get<double>();
    if (!(c > 0)) continue;
    total += c;
    weighted += c * double(i);
    hi = double(i);
  }
  if (total <= 0) return;
  if (!*mean) *mean = weighted / total;
  if (!*max) *max = hi;
}

}  // namespace

std::string ProgressLine::format(const json& r) {
  namespace k = metric_keys;
  if (!r.is_object()) return "";
  std::vector<std::string> parts;
  if (auto v = number(r, k::kStep)) parts.push_back(fmt::format("step {:.0f}", *v));
  if (auto v = number(r, k::kRewardMean)) parts.push_back(fmt::format("reward {:.3f}", *v));
  if (auto v = number(r, k::kRewardShapedMean)) parts.push_back(fmt::format("reward_shaped {:.3f}", *v));
  if (auto v = number(r, k::kEvalAccuracy)) parts.push_back(fmt::format("acc {:.1f}%", *v * 100));
  if (auto v = number(r, k::kGenTokensPerS)) parts.push_back(fmt::format("gen {} tok/s", human_rate(*v)));
  if (auto v = number(r, k::kTrainTokensPerS))
    parts.push_back(fmt::format("train {} tok/s", human_rate(*v)));
  std::optional<double> smean, smax;
  staleness(r, &smean, &smax);
  if (smean && smax) parts.push_back(fmt::format("stale {:.1f} (max {:.0f})", *smean, *smax));
  else if (smean) parts.push_back(fmt::format("stale {:.1f}", *smean));
  else if (smax) parts.push_back(fmt::format("stale max {:.0f}", *smax));
  if (auto v = number(r, k::kDroppedFraction)) parts.push_back(fmt::format("dropped_before_replay {:.1f}%", *v * 100));
  if (auto v = number(r, k::kStepTime)) parts.push_back(fmt::format("{:.1f} s/step", *v));
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += " | ";
    out += parts[i];
  }
  return out;
}

std::string ProgressLine::update(const json& record) {
  if (record.is_object())
    for (auto it = record.begin(); it != record.end(); ++it) state_[it.key()] = it.value();
  return format(state_);
}

}  // namespace m1
