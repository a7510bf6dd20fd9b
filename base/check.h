// Invariant checks. A failed M1_CHECK is a bug in m1rl (never bad input: bad input gets a Status):
// it prints file:line and the condition, then aborts. Active in every build type.
#pragma once

#include <cstdio>
#include <cstdlib>

#define M1_CHECK(cond)                                                                  \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

#define M1_CHECK_MSG(cond, msg)                                                         \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   (msg));                                                              \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)
