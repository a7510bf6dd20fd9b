// The bad-input suite's harness: a case is one row of a table — files to create in a fresh
// temporary folder, one `m1rl` command line, the exit class it must end with, words its output
// must hold, and post-conditions on the files afterwards. run_cases() runs a table against the
// real binary (M1_BINARY) and reports every failing row with its command line and output.
//
// Substitutions in every string of a row: {dir} = the row's own fresh folder, {src} = the source
// tree (M1_SOURCE_DIR), {shared} = the table's shared fixture folder (a model, a finished run).
//
// Generic rules, checked for every row whatever it expects:
//  - the process did not die by a signal (it must exit; a hang past timeout_s is killed and fails);
//  - its exit status is in the expected class (ok 0, error 1, usage 2, ...);
//  - the output (stdout and stderr together) holds no internal check text ("check failed",
//    "Assertion", "terminate called", "Segmentation", "what():", and the sanitizers' reports)
//    and no run of more than 40 digits (DBL_MAX printed in full);
//  - every expected word appears in the output.
// Signals are sent by observed progress (a file appearing, a line in the output), never after
// fixed sleeps alone; every wait is bounded by the row's timeout_s.
// Rows run in <tmp>/m1-badinput-<pid>/<kind>/<row>; a failing row's folder is kept (its report
// names it), everything else is removed at exit.
// M1_BADINPUT_VERBOSE=1 prints one line per row (exit status, signals sent, files changed).
// Not thread safe: one table at a time.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace m1::badinput {

enum class Kind {
  kCli,
  kConfig,
  kModelDir,
  kSafetensors,
  kPromptsJsonl,
  kTokensJsonl,
  kReplayDir,
  kCheckpointDir,
  kSignal,
  kCorruption,
};
const char* kind_name(Kind k);

// The exit classes a row may expect.
enum class Expect {
  kOk,            // 0
  kError,         // 1: bad input reported
  kUsage,         // 2: a command-line error
  kUsageOrError,  // 1 or 2
  kNonZero,       // any exit status but 0 (never a death by signal)
  kOkOrError,     // 0 or 1: "recovers, or refuses clearly"
  kInterrupted,   // 130: a second interrupt exits at once
  kInterruptedOrOk,  // 130, or 0 when the process had finished before the second signal
};
const char* expect_name(Expect e);

// What one row saw; post-conditions and signal conditions read it.
struct Ctx {
  std::string dir, src, shared;
  std::string output;            // stdout and stderr together (read at the end, or while polling)
  std::string output_path;       // where the running process writes it
  int status = 0;                // raw wait status
  bool hung = false;             // killed by the harness after timeout_s
  size_t signals_sent = 0;       // how many of the row's signal steps were sent
  int pid = 0;                   // the running process
  std::vector<std::string> problems, notes;
  std::string sub(const std::string& s) const;  // {dir}, {src}, {shared} replaced
};

// A file the row starts with, relative to {dir}. Content "@copy:PATH" copies PATH (a file or a
// folder tree); any other content is written as is (after substitution).
struct File {
  std::string path, content;
};

// A change made to the files before the command runs (cut a file, flip bytes). It may add notes
// (shown when the row fails) and problems (the row then fails without running).
struct Prepare {
  std::string what;
  std::function<void(Ctx&)> fn;
};

// A post-condition: `before` runs after the files are prepared (e.g. a snapshot), `check` after
// the process ended; both add to ctx.problems.
struct Post {
  std::string what;
  std::function<void(Ctx&)> before, check;
};

// A signal sent when `ready` first holds (polled every 20 ms), then `delay_s` seconds later.
// A step whose process has already exited is not sent (and neither are later steps).
struct Signal {
  std::string wait_what;
  std::function<bool(Ctx&)> ready;  // null: right after the previous step
  double delay_s = 0;
  int sig = 0;
};

struct Case {
  std::string name;
  Kind kind = Kind::kCli;
  std::vector<File> files;
  std::vector<Prepare> prepare;
  std::string args;  // the command line after `m1rl` (shell words: quote with '...')
  Expect expect = Expect::kError;
  std::vector<std::string> words;
  std::vector<Post> post;
  std::vector<Signal> signals;
  std::string cwd = "{dir}";
  std::string env;  // "NAME=value ..." exported for the command (after substitution)
  int timeout_s = 60;
};

// Runs every row; returns the number that failed (each is reported through doctest).
size_t run_cases(const std::vector<Case>& cases, const std::string& shared);

// Prints "badinput: N cases: cli 12, config 150, ..." for a table (or all tables).
std::string count_by_kind(const std::vector<Case>& cases);

// ---- helpers for tables ----

// A fresh folder for this process's fixtures: <tmp>/m1-badinput-<pid>/<name> (emptied first).
std::string scratch(const std::string& name);
// Runs `m1rl ARGS` in CWD and returns its exit status (-1 on a signal) and output.
struct Run {
  int rc = 0;
  std::string out;
};
Run run_m1(const std::string& args, const std::string& cwd = "/");

std::string read_all(const std::string& path);   // "" when missing
void write_all(const std::string& path, const std::string& bytes);
std::string src_file(const std::string& rel);   // a file of the source tree, read

// Post-conditions.
Post absent(const std::string& path);
Post present(const std::string& path);
Post unchanged(const std::string& path);                        // a file or a folder tree, bytes
Post file_contains(const std::string& path, const std::string& text);
Post output_matches(const std::string& regex, const std::string& what);
Post only_entries(const std::string& dir, std::vector<std::string> names);  // nothing else in DIR
Post checkpoint_after_zero(const std::string& root);  // ROOT/step_N with N > 0 exists
Post checkpoints_complete(const std::string& root);   // every ROOT/step_* holds DONE
Post exit_130_if_signals_sent(size_t n);               // the n-th step was sent → exit status 130

// Signal conditions.
std::function<bool(Ctx&)> when_output(const std::string& text);
std::function<bool(Ctx&)> when_file_matches(const std::string& path, const std::string& regex);
std::function<bool(Ctx&)> when_stopped();  // the process is stopped (SIGSTOP took effect)

// File changes.
Prepare truncate_to(const std::string& path, double fraction);         // keep this share of the bytes
Prepare overwrite_at(const std::string& path, double where, const std::string& bytes);  // at where·size
Prepare append_bytes(const std::string& path, const std::string& bytes);
Prepare remove_path(const std::string& path);
Prepare make_folder(const std::string& path);  // PATH (whatever it was) becomes a folder holding a file
// Edits a safetensors file's JSON header (the data bytes stay where they are).
Prepare edit_safetensors_header(const std::string& path, const std::string& what,
                                std::function<void(nlohmann::json& header)> edit);

}  // namespace m1::badinput
