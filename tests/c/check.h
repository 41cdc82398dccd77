/*
 * Checks shared by the C test programs under tests/c: CHECK counts a failed condition (with
 * the line and the library's last error) and goes on, so one run names every failing check;
 * main returns `failures != 0`.
 */
#ifndef CORRAL_TEST_CHECK_H
#define CORRAL_TEST_CHECK_H

#include <corral.h>

#include <stdio.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond, what)                                                       \
  do {                                                                          \
    if (!(cond)) {                                                              \
      char m_[512];                                                             \
      corral_last_error_message(m_, sizeof m_);                                 \
      fprintf(stderr, "FAIL %s (line %d): last error: %s\n", what, __LINE__, m_); \
      failures++;                                                               \
    }                                                                           \
  } while (0)

/* Whether the calling thread's last error message contains `needle`. */
static inline int last_error_contains(const char *needle) {
  char m[512];
  corral_last_error_message(m, sizeof m);
  return strstr(m, needle) != NULL;
}

#endif
