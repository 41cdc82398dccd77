/*
 * Checks shared by the C test programs under tests/c: CHECK counts a failed condition (with
 * the line and the library's last error) and goes on, so one run names every failing check;
 * main returns `failures != 0`. Below it, the loopback client and primary-side waits several
 * programs share (each returns what happened; the caller CHECKs it, so a failure names the
 * caller's line).
 */
#ifndef CORRAL_TEST_CHECK_H
#define CORRAL_TEST_CHECK_H

#include <corral.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* Ends a forked worker whose failed checks are the bit set `bad`: an exit status keeps only
 * 8 bits, so the whole set goes to stderr and a set with none of its low 8 bits exits 255
 * (a failure all the same). */
static inline void exit_with_checks(int bad) {
  if (bad) fprintf(stderr, "worker pid %d: failed checks %#x\n", (int)getpid(), bad);
  _exit(bad == 0 ? 0 : (bad & 0xff) ? (bad & 0xff) : 255);
}

/* Whether the calling thread's last error message contains `needle`. */
static inline int last_error_contains(const char *needle) {
  char m[512];
  corral_last_error_message(m, sizeof m);
  return strstr(m, needle) != NULL;
}

/* A TCP connection to 127.0.0.1:port whose reads time out after `timeout_s`; -1 when it
 * could not be made. */
static inline int loopback_connect(uint16_t port, int timeout_s) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {timeout_s, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
    close(s);
    return -1;
  }
  return s;
}

/* Reads a client's request line (up to its newline, 64 bytes at most) from a connection. */
static inline void read_request(int fd) {
  char buf[64];
  size_t got = 0;
  while (got < sizeof buf) {
    ssize_t n = read(fd, buf + got, sizeof buf - got);
    if (n <= 0) break;
    got += (size_t)n;
    if (memchr(buf, '\n', got)) break;
  }
}

/* Dispatches until `*listening` (counted by the event callback) reaches `n`, at most `secs`;
 * whether it did. */
static inline int wait_listening(corral_primary *p, const int *listening, int n, int secs) {
  time_t deadline = time(NULL) + secs;
  while (*listening < n && time(NULL) < deadline) {
    if (corral_primary_dispatch(p, 100) != CORRAL_STATUS_OK) break;
  }
  return *listening == n;
}

/* Dispatches (so the primary deals its connections) until the client process exits, at most
 * `secs`; its wait status, or -1 when it did not finish in time (it is then killed and
 * reaped) or was never started. */
static inline int wait_client(corral_primary *p, pid_t client, int secs) {
  if (client <= 0) return -1;
  time_t deadline = time(NULL) + secs;
  while (time(NULL) < deadline) {
    int status = 0;
    if (waitpid(client, &status, WNOHANG) == client) return status;
    if (corral_primary_dispatch(p, 20) != CORRAL_STATUS_OK) break;
  }
  kill(client, SIGKILL);
  waitpid(client, NULL, 0);
  return -1;
}

/* Dispatches until the primary has no worker left, at most `secs`; whether none is left. */
static inline int wait_workers_gone(corral_primary *p, int secs) {
  time_t deadline = time(NULL) + secs;
  while (corral_primary_worker_count(p) > 0 && time(NULL) < deadline) {
    if (corral_primary_dispatch(p, 100) != CORRAL_STATUS_OK) break;
  }
  return corral_primary_worker_count(p) == 0;
}

#endif
