#include "model/bpe_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace m1::bpe {
namespace {

// Per-thread match state: match data large enough for every pattern's group 0 (PCRE2 fills
// group 0 even when a pattern has more groups than the vector holds), and a JIT stack larger
// than PCRE2's 32 KiB default so that long runs (a megabyte of spaces) match.
struct ThreadState {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* js = nullptr;
  ThreadState() {
    md = pcre2_match_data_create(16, nullptr);
    mc = pcre2_match_context_create(nullptr);
    js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (mc && js) pcre2_jit_stack_assign(mc, nullptr, js);
  }
  ~ThreadState() {
    if (md) pcre2_match_data_free(md);
    if (mc) pcre2_match_context_free(mc);
    if (js) pcre2_jit_stack_free(js);
  }
};

ThreadState& thread_state() {
  thread_local ThreadState st;
  return st;
}

}  // namespace

Result<std::unique_ptr<Regex>> Regex::compile(const std::string& pattern, bool literal) {
  int err = 0;
  PCRE2_SIZE off = 0;
  // (PCRE2_LITERAL refuses PCRE2_UCP, which a literal does not need.)
  const uint32_t opts = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts, &err, &off,
                                   nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    return Status::errorf("invalid regex at offset {}: {}", size_t(off), reinterpret_cast<const char*>(buf));
  }
  std::unique_ptr<Regex> r(new Regex());
  r->code_ = code;
  r->jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  return r;
}

Regex::~Regex() {
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

bool Regex::search(std::string_view s, size_t from, size_t* b, size_t* e) const {
  ThreadState& st = thread_state();
  if (!st.md) return false;
  auto* code = static_cast<pcre2_code*>(code_);
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(s.data());
  int rc = PCRE2_ERROR_NOMATCH;
  if (jit_) rc = pcre2_jit_match(code, subj, s.size(), from, 0, st.md, st.mc);
  if (!jit_ || (rc < 0 && rc != PCRE2_ERROR_NOMATCH))  // no JIT, or a JIT limit: the interpreter
    rc = pcre2_match(code, subj, s.size(), from, PCRE2_NO_UTF_CHECK, st.md, nullptr);
  if (rc < 0) return false;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md);
  *b = ov[0];
  *e = ov[1];
  // \K in a lookahead can put the start after the end; treat such a match as empty at its end.
  if (*b > *e) *b = *e;
  return true;
}

}  // namespace m1::bpe
