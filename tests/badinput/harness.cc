#include "tests/badinput/harness.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

namespace m1::badinput {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kCli: return "cli";
    case Kind::kConfig: return "config";
    case Kind::kModelDir: return "model-dir";
    case Kind::kSafetensors: return "safetensors";
    case Kind::kPromptsJsonl: return "prompts-jsonl";
    case Kind::kTokensJsonl: return "tokens-jsonl";
    case Kind::kReplayDir: return "replay-dir";
    case Kind::kCheckpointDir: return "checkpoint-dir";
    case Kind::kSignal: return "signal";
    case Kind::kCorruption: return "corruption";
  }
  return "?";
}

const char* expect_name(Expect e) {
  switch (e) {
    case Expect::kOk: return "ok (0)";
    case Expect::kError: return "error (1)";
    case Expect::kUsage: return "usage (2)";
    case Expect::kUsageOrError: return "usage or error (1 or 2)";
    case Expect::kNonZero: return "non-zero";
    case Expect::kOkOrError: return "ok or error (0 or 1)";
    case Expect::kInterrupted: return "interrupted (130)";
    case Expect::kInterruptedOrOk: return "interrupted (130), or 0 when done before the second signal";
  }
  return "?";
}

namespace {

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) s.replace(p, from.size(), to);
  return s;
}

// This process's scratch folder; removed at exit unless a row failed (its files are kept then).
struct Scratch {
  std::string dir = (fs::temp_directory_path() / ("m1-badinput-" + std::to_string(getpid()))).string();
  size_t failed = 0;
  Scratch() {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~Scratch() {  // failing rows keep their folders (named in their reports); fixtures go
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string n = e.path().filename().string();
      if (failed == 0 || n.rfind("shared-", 0) == 0 || n.rfind("run_m1", 0) == 0) fs::remove_all(e.path(), ec);
    }
    if (fs::is_empty(dir, ec)) fs::remove(dir, ec);
  }
};

Scratch& scratch_root() {
  static Scratch s;
  return s;
}

const std::string& base_dir() { return scratch_root().dir; }

std::string describe_status(int st, bool hung) {
  if (hung) return fmt::format("hung: killed by the harness ({})", WIFSIGNALED(st) ? "SIGKILL" : "exited meanwhile");
  if (WIFSIGNALED(st)) return fmt::format("killed by signal {} ({})", WTERMSIG(st), strsignal(WTERMSIG(st)));
  if (WIFEXITED(st)) return fmt::format("exit {}", WEXITSTATUS(st));
  return fmt::format("wait status {}", st);
}

bool exit_in_class(int code, Expect e) {
  switch (e) {
    case Expect::kOk: return code == 0;
    case Expect::kError: return code == 1;
    case Expect::kUsage: return code == 2;
    case Expect::kUsageOrError: return code == 1 || code == 2;
    case Expect::kNonZero: return code != 0;
    case Expect::kOkOrError: return code == 0 || code == 1;
    case Expect::kInterrupted: return code == 130;
    case Expect::kInterruptedOrOk: return code == 130 || code == 0;
  }
  return false;
}

// Starts `exec M1_BINARY ARGS` through /bin/sh in CWD, in its own process group, stdin from
// /dev/null, stdout and stderr into OUT. The shell execs, so the wait status is m1rl's own.
pid_t spawn(const std::string& args, const std::string& cwd, const std::string& out, const std::string& env = "") {
  // M1_BADINPUT_BINARY runs the table against another build (e.g. an older commit's, to show a row
  // failed before its fix); the default is this build's m1rl.
  const char* other = std::getenv("M1_BADINPUT_BINARY");
  const std::string bin = other && *other ? other : M1_BINARY;
  const std::string cmd = (env.empty() ? "" : "export " + env + "; ") + "exec " + bin + " " + args;
  pid_t pid = fork();
  if (pid != 0) return pid;
  setpgid(0, 0);
  int in = open("/dev/null", O_RDONLY);
  int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in < 0 || fd < 0 || chdir(cwd.c_str()) != 0) _exit(126);
  dup2(in, 0);
  dup2(fd, 1);
  dup2(fd, 2);
  execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
  _exit(127);
}

struct Waited {
  int status = 0;
  bool hung = false;
  double seconds = 0;
};

// Waits for PID at most timeout_s, sending SIGNALS as their conditions come true (ctx.output is
// refreshed from ctx.output_path before each condition is asked).
Waited wait_for(pid_t pid, int timeout_s, const std::vector<Signal>& signals, Ctx& ctx) {
  const auto t0 = Clock::now();
  size_t next = 0;
  bool armed = false;
  Clock::time_point armed_at;
  auto secs = [&](Clock::time_point t) { return std::chrono::duration<double>(t - t0).count(); };
  while (true) {
    int st = 0;
    if (waitpid(pid, &st, WNOHANG) == pid) return {st, false, secs(Clock::now())};
    const auto now = Clock::now();
    if (secs(now) > timeout_s) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      if (next < signals.size()) ctx.notes.push_back("still waiting for: " + signals[next].wait_what);
      return {st, true, secs(Clock::now())};
    }
    if (next < signals.size()) {
      const Signal& s = signals[next];
      if (!armed) {
        ctx.output = read_all(ctx.output_path);
        if (!s.ready || s.ready(ctx)) {
          armed = true;
          armed_at = now;
        }
      }
      if (armed && std::chrono::duration<double>(now - armed_at).count() >= s.delay_s) {
        kill(pid, s.sig);
        ctx.notes.push_back(fmt::format("sent {} at {:.2f} s ({})", strsignal(s.sig), secs(now), s.wait_what));
        ctx.signals_sent = ++next;
        armed = false;
        continue;  // a next step without a condition goes at once
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Runs of more than 40 digits (DBL_MAX printed in full is 309).
std::string long_number(const std::string& s) {
  size_t run = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      ++run;
      continue;
    }
    if (run > 40) return s.substr(i - run, 60) + "...";
    run = 0;
  }
  return {};
}

std::string lower(std::string s) {
  for (auto& c : s) c = char(std::tolower((unsigned char)c));
  return s;
}

void generic_checks(const Case& c, Ctx& ctx, const Waited& w) {
  const int st = w.status;
  if (w.hung) {
    ctx.problems.push_back(fmt::format("did not exit within {} s", c.timeout_s));
  } else if (WIFSIGNALED(st)) {
    ctx.problems.push_back(
        fmt::format("died by signal {} ({}): a crash, not an error report", WTERMSIG(st), strsignal(WTERMSIG(st))));
  } else if (!exit_in_class(WEXITSTATUS(st), c.expect)) {
    ctx.problems.push_back(fmt::format("exit {}, expected {}{}", WEXITSTATUS(st), expect_name(c.expect),
                                       WEXITSTATUS(st) == 0 && c.expect != Expect::kOk ? ": the bad input was accepted"
                                                                                         : ""));
  }
  const std::string low = lower(ctx.output);
  for (const char* bad : {"check failed", "assertion", "terminate called", "segmentation", "what():",
                          "addresssanitizer", "runtime error:"})
    if (low.find(bad) != std::string::npos) ctx.problems.push_back(fmt::format("the output holds internal text '{}'", bad));
  if (std::string n = long_number(ctx.output); !n.empty())
    ctx.problems.push_back("the output holds a number of more than 40 digits: " + n);
  for (const auto& w0 : c.words) {
    const std::string w1 = ctx.sub(w0);
    if (ctx.output.find(w1) == std::string::npos) ctx.problems.push_back(fmt::format("the output lacks '{}'", w1));
  }
}

std::string clip(const std::string& s, size_t keep = 3000) {
  if (s.size() <= 2 * keep) return s;
  return s.substr(0, keep) + fmt::format("\n[... {} bytes ...]\n", s.size() - 2 * keep) + s.substr(s.size() - keep);
}

void materialize(const File& f, Ctx& ctx) {
  const fs::path dst = fs::path(ctx.dir) / ctx.sub(f.path);
  fs::create_directories(dst.parent_path());
  if (f.content.rfind("@copy:", 0) == 0) {
    const fs::path from = ctx.sub(f.content.substr(6));
    std::error_code ec;
    if (fs::is_directory(from))
      fs::copy(from, dst, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
    else
      fs::copy_file(from, dst, fs::copy_options::overwrite_existing, ec);
    if (ec) ctx.problems.push_back(fmt::format("setup: copying {} to {}: {}", from.string(), dst.string(), ec.message()));
    return;
  }
  write_all(dst.string(), ctx.sub(f.content));
}

// One row, start to end; true when it passed.
bool run_case(const Case& c, const std::string& shared, size_t index) {
  Ctx ctx;
  ctx.src = M1_SOURCE_DIR;
  ctx.shared = shared;
  std::string slug = c.name;
  for (auto& ch : slug)
    if (!std::isalnum((unsigned char)ch)) ch = '-';
  slug = fmt::format("{:03}-{}", index, slug.substr(0, 60));
  ctx.dir = (fs::path(base_dir()) / kind_name(c.kind) / slug).string();
  ctx.output_path = ctx.dir + ".out";
  fs::remove_all(ctx.dir);
  fs::create_directories(ctx.dir);
  try {
    for (const File& f : c.files) materialize(f, ctx);
    for (const Prepare& p : c.prepare)
      if (ctx.problems.empty()) p.fn(ctx);
    for (const Post& p : c.post)
      if (p.before) p.before(ctx);
  } catch (const std::exception& e) {
    ctx.problems.push_back(std::string("setup: ") + e.what());
  }
  const std::string args = ctx.sub(c.args), cwd = ctx.sub(c.cwd);
  Waited w;
  const bool ran = ctx.problems.empty();
  if (ran) {
    pid_t pid = spawn(args, cwd, ctx.output_path, ctx.sub(c.env));
    REQUIRE(pid > 0);
    ctx.pid = pid;
    ctx.notes.push_back(fmt::format("pid {}", pid));
    w = wait_for(pid, c.timeout_s, c.signals, ctx);
    ctx.status = w.status;
    ctx.hung = w.hung;
    ctx.output = read_all(ctx.output_path);
    generic_checks(c, ctx, w);
    for (const Post& p : c.post)
      if (p.check) p.check(ctx);
  }
  if (std::getenv("M1_BADINPUT_VERBOSE")) {  // one line per row: what it did, with the harness's notes
    std::string line = fmt::format("[{}] {}: {} in {:.1f} s", kind_name(c.kind), c.name,
                                   ran ? describe_status(w.status, w.hung) : "not run", w.seconds);
    for (const auto& n : ctx.notes) line += "; " + n;
    std::string last = ctx.output.substr(0, ctx.output.find_last_not_of("\n") + 1);
    last = last.substr(last.find_last_of('\n') + 1);
    line += " | " + last.substr(0, 240);
    std::printf("%s%s\n", ctx.problems.empty() ? "  ok  " : "  FAIL ", line.c_str());
  }
  if (ctx.problems.empty()) {
    fs::remove_all(ctx.dir);
    fs::remove(ctx.output_path);
    return true;
  }
  std::string msg = fmt::format("[{}] {}\n  $ cd {} && {}m1rl {}\n  {}; expected {}\n", kind_name(c.kind), c.name, cwd,
                                c.env.empty() ? "" : ctx.sub(c.env) + " ", args,
                                ran ? describe_status(w.status, w.hung) : "not run", expect_name(c.expect));
  for (const auto& p : ctx.problems) msg += "  FAIL: " + p + "\n";
  for (const auto& n : ctx.notes) msg += "  note: " + n + "\n";
  msg += "  files kept in " + ctx.dir + "\n  output:\n" + clip(ctx.output);
  FAIL_CHECK(msg);
  return false;
}

std::vector<std::string> step_dirs(const std::string& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("step_", 0) == 0 && e.is_directory()) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::map<std::string, std::string> snapshot(const std::string& path) {
  std::map<std::string, std::string> m;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    m[""] = read_all(path);
    return m;
  }
  for (const auto& e : fs::recursive_directory_iterator(path, ec))
    if (e.is_regular_file()) m[fs::relative(e.path(), path).string()] = read_all(e.path().string());
  return m;
}

}  // namespace

std::string Ctx::sub(const std::string& s) const {
  return replace_all(replace_all(replace_all(s, "{dir}", dir), "{src}", src), "{shared}", shared);
}

size_t run_cases(const std::vector<Case>& cases, const std::string& shared) {
  size_t failed = 0;
  const auto t0 = Clock::now();
  for (size_t i = 0; i < cases.size(); ++i)
    if (!run_case(cases[i], shared, i)) ++failed;
  scratch_root().failed += failed;
  std::printf("badinput: ran %s, %zu failing, %.1f s\n", count_by_kind(cases).c_str(), failed,
              std::chrono::duration<double>(Clock::now() - t0).count());
  std::fflush(stdout);
  return failed;
}

std::string count_by_kind(const std::vector<Case>& cases) {
  std::map<std::string, size_t> n;
  for (const auto& c : cases) n[kind_name(c.kind)]++;
  std::string s = fmt::format("{} cases (", cases.size());
  bool first = true;
  for (const auto& [k, v] : n) {
    s += fmt::format("{}{} {}", first ? "" : ", ", k, v);
    first = false;
  }
  return s + ")";
}

std::string scratch(const std::string& name) {
  const std::string d = (fs::path(base_dir()) / name).string();
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

Run run_m1(const std::string& args, const std::string& cwd) {
  Ctx ctx;
  ctx.output_path = scratch("run_m1") + ".out";
  pid_t pid = spawn(args, cwd, ctx.output_path);
  Waited w = wait_for(pid, 600, {}, ctx);
  Run r;
  r.rc = !w.hung && WIFEXITED(w.status) ? WEXITSTATUS(w.status) : -1;
  r.out = read_all(ctx.output_path);
  return r;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string src_file(const std::string& rel) { return read_all(std::string(M1_SOURCE_DIR) + "/" + rel); }

// ---- post-conditions ----

Post absent(const std::string& path) {
  return {"absent " + path, nullptr, [path](Ctx& c) {
            if (fs::exists(c.sub(path))) c.problems.push_back(c.sub(path) + " exists (it must not be created)");
          }};
}

Post present(const std::string& path) {
  return {"present " + path, nullptr, [path](Ctx& c) {
            if (!fs::exists(c.sub(path))) c.problems.push_back(c.sub(path) + " does not exist");
          }};
}

Post unchanged(const std::string& path) {
  auto before = std::make_shared<std::map<std::string, std::string>>();
  return {"unchanged " + path, [path, before](Ctx& c) { *before = snapshot(c.sub(path)); },
          [path, before](Ctx& c) {
            const auto after = snapshot(c.sub(path));
            for (const auto& [k, v] : *before) {
              auto it = after.find(k);
              if (it == after.end())
                c.problems.push_back(fmt::format("{}/{} was removed (it must stay unchanged)", c.sub(path), k));
              else if (it->second != v)
                c.problems.push_back(fmt::format("{}/{} changed (it must stay unchanged)", c.sub(path), k));
            }
            for (const auto& [k, v] : after)
              if (!before->count(k)) c.problems.push_back(fmt::format("{}/{} was added", c.sub(path), k));
          }};
}

Post file_contains(const std::string& path, const std::string& text) {
  return {"contains", nullptr, [path, text](Ctx& c) {
            if (read_all(c.sub(path)).find(c.sub(text)) == std::string::npos)
              c.problems.push_back(fmt::format("{} does not contain '{}'", c.sub(path), c.sub(text)));
          }};
}

Post output_matches(const std::string& regex, const std::string& what) {
  return {what, nullptr, [regex, what](Ctx& c) {
            if (!std::regex_search(c.output, std::regex(c.sub(regex))))
              c.problems.push_back(fmt::format("the output lacks {} (/{}/)", what, c.sub(regex)));
          }};
}

Post only_entries(const std::string& dir, std::vector<std::string> names) {
  return {"only entries", nullptr, [dir, names](Ctx& c) {
            std::error_code ec;
            for (const auto& e : fs::directory_iterator(c.sub(dir), ec)) {
              const std::string n = e.path().filename().string();
              if (std::find(names.begin(), names.end(), n) == names.end())
                c.problems.push_back(fmt::format("{} holds an unexpected {} (a half-written output?)", c.sub(dir), n));
            }
          }};
}

Post checkpoint_after_zero(const std::string& root) {
  return {"checkpoint", nullptr, [root](Ctx& c) {
            for (const auto& d : step_dirs(c.sub(root)))
              if (std::atoll(d.c_str() + 5) > 0 && fs::exists(fs::path(c.sub(root)) / d / "DONE")) return;
            c.problems.push_back(fmt::format("no complete checkpoint {}/step_N with N > 0", c.sub(root)));
          }};
}

Post checkpoints_complete(const std::string& root) {
  return {"complete", nullptr, [root](Ctx& c) {
            for (const auto& d : step_dirs(c.sub(root)))
              if (!fs::exists(fs::path(c.sub(root)) / d / "DONE"))
                c.problems.push_back(fmt::format("{}/{} has no DONE marker (a half-written checkpoint)", c.sub(root), d));
          }};
}

Post exit_130_if_signals_sent(size_t n) {
  return {"130", nullptr, [n](Ctx& c) {
            if (c.signals_sent >= n && !c.hung && WIFEXITED(c.status) && WEXITSTATUS(c.status) != 130)
              c.problems.push_back(fmt::format("exit {} after the second interrupt reached a running process; "
                                               "expected 130",
                                               WEXITSTATUS(c.status)));
            if (c.signals_sent < n) c.notes.push_back("the process had finished before the second signal");
          }};
}

// ---- signal conditions ----

std::function<bool(Ctx&)> when_output(const std::string& text) {
  return [text](Ctx& c) { return c.output.find(c.sub(text)) != std::string::npos; };
}

std::function<bool(Ctx&)> when_file_matches(const std::string& path, const std::string& regex) {
  return [path, regex](Ctx& c) { return std::regex_search(read_all(c.sub(path)), std::regex(regex)); };
}

std::function<bool(Ctx&)> when_stopped() {
  return [](Ctx& c) {
    const std::string st = read_all(fmt::format("/proc/{}/stat", c.pid));
    const size_t p = st.rfind(')');
    return p != std::string::npos && p + 2 < st.size() && st[p + 2] == 'T';
  };
}

// ---- file changes ----

Prepare truncate_to(const std::string& path, double fraction) {
  return {"truncate", [path, fraction](Ctx& c) {
            const std::string p = c.sub(path);
            std::error_code ec;
            const auto n = fs::file_size(p, ec);
            if (ec) return c.problems.push_back("setup: " + p + ": " + ec.message());
            fs::resize_file(p, uintmax_t(double(n) * fraction));
            c.notes.push_back(fmt::format("cut {} from {} to {} bytes", p, n, uintmax_t(double(n) * fraction)));
          }};
}

Prepare overwrite_at(const std::string& path, double where, const std::string& bytes) {
  return {"overwrite", [path, where, bytes](Ctx& c) {
            const std::string p = c.sub(path);
            std::string s = read_all(p);
            if (s.size() < bytes.size()) return c.problems.push_back("setup: " + p + " is too short to overwrite");
            const size_t at = std::min(size_t(double(s.size()) * where), s.size() - bytes.size());
            s.replace(at, bytes.size(), bytes);
            write_all(p, s);
            c.notes.push_back(fmt::format("overwrote {} bytes of {} at offset {}", bytes.size(), p, at));
          }};
}

Prepare append_bytes(const std::string& path, const std::string& bytes) {
  return {"append", [path, bytes](Ctx& c) { write_all(c.sub(path), read_all(c.sub(path)) + bytes); }};
}

Prepare remove_path(const std::string& path) {
  return {"remove", [path](Ctx& c) { fs::remove_all(c.sub(path)); }};
}

Prepare make_folder(const std::string& path) {
  return {"make a folder", [path](Ctx& c) {
            fs::remove_all(c.sub(path));
            fs::create_directories(c.sub(path));
            write_all(c.sub(path) + "/x", "x");
          }};
}

Prepare edit_safetensors_header(const std::string& path, const std::string& what,
                                std::function<void(nlohmann::json& header)> edit) {
  return {what, [path, what, edit](Ctx& c) {
            const std::string p = c.sub(path);
            const std::string s = read_all(p);
            uint64_t n = 0;
            if (s.size() < 8) return c.problems.push_back("setup: " + p + " is not a safetensors file");
            std::memcpy(&n, s.data(), 8);
            if (8 + n > s.size()) return c.problems.push_back("setup: " + p + ": header length past the end");
            nlohmann::json h = nlohmann::json::parse(s.substr(8, n));
            edit(h);
            std::string text = h.dump();
            while (text.size() % 8) text += ' ';
            const uint64_t m = text.size();
            std::string out(8, '\0');
            std::memcpy(out.data(), &m, 8);
            write_all(p, out + text + s.substr(8 + n));
            c.notes.push_back(fmt::format("{}: {}", p, what));
          }};
}

}  // namespace m1::badinput
