/*
 * corral_worker_listen_with_options from a forked worker:
 * - CORRAL_LISTEN_IPV6_ONLY on "[::]:P" where the worker holds an IPv4 listener on 0.0.0.0:P:
 *   both coexist; asking for "[::]:P" again without the option joins that listener as it was
 *   bound (the options are not part of the key); without it, "[::]:Q" is dual-stack and
 *   IPv4 0.0.0.0:Q is taken. (IPv4 is bound first: a v6-only listen on port 0 may get a port
 *   another process holds on 127.0.0.1.)
 * - CORRAL_LISTEN_READABLE_ALL | CORRAL_LISTEN_WRITABLE_ALL on a Unix socket: the file mode
 *   has rw for everyone; CORRAL_LISTEN_READABLE_ALL | CORRAL_LISTEN_MODE_EXACT: exactly 0444;
 * - the primary removes the socket file when the worker leaves (before it is freed);
 * - unknown option bits: CORRAL_STATUS_INVALID_ARGUMENT naming `options`;
 * - a listen after the primary asked the worker to disconnect (the worker's message tells the
 *   primary to ask): the primary's refusal arrives as it was, CORRAL_STATUS_WRONG_STATE
 *   ("worker 1 is disconnecting"), not an OS error with errno 0.
 * Prints "ok" and exits 0 when every check passes; otherwise names the failing check.
 */
#include <corral.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

/* A listening IPv4 socket on 0.0.0.0:*port (0: the kernel picks, written back), or -errno. */
static int listen_v4(uint16_t *port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -errno;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(*port);
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  socklen_t len = sizeof a;
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 1) != 0 ||
      getsockname(s, (struct sockaddr *)&a, &len) != 0) {
    int e = errno;
    close(s);
    return -e;
  }
  *port = ntohs(a.sin_port);
  return s;
}

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  if (corral_event_kind(ev) == CORRAL_EVENT_EXIT) *(int *)userdata = corral_event_exit_code(ev);
  if (corral_event_kind(ev) == CORRAL_EVENT_MESSAGE &&
      corral_primary_disconnect(p, corral_event_worker_id(ev)) != CORRAL_STATUS_OK) {
    *(int *)userdata = 1000; /* not a worker exit code: the check below fails */
  }
}

/* The worker's checks; its exit code is a bit set of the failed ones. */
static int worker_side(corral_worker *w, const char *sock_path) {
  int bad = 0;
  uint32_t lid = 0, lid2 = 0;
  uint16_t port = 0, got = 0, got2 = 0;
  char addr[32];
  int v4 = listen_v4(&port);
  if (v4 < 0) return 1;
  snprintf(addr, sizeof addr, "[::]:%u", (unsigned)port);
  if (corral_worker_listen_with_options(w, addr, 7, CORRAL_LISTEN_IPV6_ONLY, &lid, &got) != CORRAL_STATUS_OK) {
    if (corral_last_error_errno() == EAFNOSUPPORT) return 0; /* no IPv6 on this host */
    bad |= 2;
  } else if (got != port) {
    bad |= 2;
  }
  if (corral_worker_listen_with_options(w, addr, 7, 0, &lid2, &got2) != CORRAL_STATUS_OK) bad |= 4;
  else if (lid2 != lid || got2 != port) bad |= 4;
  close(v4);
  if (corral_worker_listen_with_options(w, ":0", 7, 0, NULL, &port) != CORRAL_STATUS_OK) {
    bad |= 4;
  } else {
    int again = listen_v4(&port);
    if (again != -EADDRINUSE) bad |= 4;
    if (again >= 0) close(again);
  }
  if (corral_worker_listen_with_options(w, sock_path, 0, CORRAL_LISTEN_READABLE_ALL | CORRAL_LISTEN_WRITABLE_ALL,
                                        NULL, NULL) != CORRAL_STATUS_OK) {
    bad |= 8;
  } else {
    struct stat st;
    if (stat(sock_path + strlen("unix:"), &st) != 0 || (st.st_mode & 0666) != 0666) bad |= 16;
  }
  /* With CORRAL_LISTEN_MODE_EXACT the mode is exactly r--r--r-- (libuv >= 1.51's way). */
  char exact_path[160];
  snprintf(exact_path, sizeof exact_path, "%s.exact", sock_path);
  if (corral_worker_listen_with_options(w, exact_path, 0, CORRAL_LISTEN_READABLE_ALL | CORRAL_LISTEN_MODE_EXACT,
                                        NULL, NULL) != CORRAL_STATUS_OK) {
    bad |= 16;
  } else {
    struct stat st;
    if (stat(exact_path + strlen("unix:"), &st) != 0 || (st.st_mode & 07777) != 0444) bad |= 16;
  }
  if (corral_worker_listen_with_options(w, "127.0.0.1:0", 0, 32, NULL, NULL) != CORRAL_STATUS_INVALID_ARGUMENT) bad |= 32;
  else if (!last_error_contains("options: unknown listen option bits 0x20")) bad |= 64;
  /* Asks the primary (its callback) to disconnect this worker, waits for the request, listens.
   * The exit code has no bit left: these failures set bit 1 and say which on stderr. */
  const char *failed = NULL;
  if (corral_worker_send(w, (const uint8_t *)"ask", 3) != CORRAL_STATUS_OK) failed = "send";
  int asked = 0;
  for (int i = 0; i < 100 && !asked && !failed; i++) {
    corral_worker_event *ev = NULL;
    if (corral_worker_next(w, 100, &ev) != CORRAL_STATUS_OK) break;
    if (ev && corral_worker_event_kind(ev) == CORRAL_WORKER_EVENT_DISCONNECT) asked = 1;
    corral_worker_event_free(ev);
  }
  if (failed) {
  } else if (!asked) {
    failed = "no disconnect request within 10 s";
  } else if (corral_worker_listen(w, "127.0.0.1:0", 0, NULL, NULL) != CORRAL_STATUS_WRONG_STATE) {
    failed = "a listen while disconnecting is not CORRAL_STATUS_WRONG_STATE";
  } else if (corral_last_error_errno() != 0 || !last_error_contains("is disconnecting")) {
    failed = "a listen while disconnecting: errno or message";
  }
  if (failed) {
    char m[512];
    corral_last_error_message(m, sizeof m);
    fprintf(stderr, "worker: %s (last error: %s)\n", failed, m);
    bad |= 1;
  }
  if (corral_worker_disconnect(w) != CORRAL_STATUS_OK) bad |= 128;
  return bad;
}

int main(void) {
  char sock_path[128];
  snprintf(sock_path, sizeof sock_path, "unix:/tmp/corral-c-listen-options-%d.sock", (int)getpid());
  unlink(sock_path + strlen("unix:"));
  int exit_code = -1;
  corral_options *o = NULL;
  corral_primary *p = NULL;
  corral_worker *w = NULL;
  uint64_t id = 0;
  CHECK(corral_options_new(&o) == CORRAL_STATUS_OK, "options_new");
  CHECK(corral_options_set_event_callback(o, on_event, &exit_code) == CORRAL_STATUS_OK, "callback");
  CHECK(corral_primary_new(o, &p) == CORRAL_STATUS_OK, "primary_new");
  corral_options_free(o);
  if (failures) return 1;

  CHECK(corral_primary_fork(p, &id, &w) == CORRAL_STATUS_OK, "fork");
  if (w) {
    int bad = worker_side(w, sock_path);
    corral_worker_free(w);
    corral_primary_free(p);
    exit_with_checks(bad);
  }
  CHECK(wait_workers_gone(p, 20), "the worker exited within 20 s");
  CHECK(exit_code == 0, "worker-side checks (exit code is a bit set of failed checks)");
  if (exit_code != 0) fprintf(stderr, "worker exit code %d\n", exit_code);
  /* Before corral_primary_free, which would unlink it anyway: the worker's leaving did. */
  CHECK(access(sock_path + strlen("unix:"), F_OK) != 0, "the socket file is removed when the worker leaves");
  corral_primary_free(p);
  unlink(sock_path + strlen("unix:"));
  if (failures == 0) printf("ok\n");
  return failures == 0 ? 0 : 1;
}
