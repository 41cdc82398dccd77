/*
 * corral_worker_refuse: a worker hands round-robin connections back and the primary deals them
 * to another worker; no client is dropped.
 * - the primary reads a PROXY v1 header (corral_options_set_proxy_protocol) on each connection;
 * - worker 1 refuses every connection it is dealt, worker 2 answers "worker 2 peer ADDR:PORT\n"
 *   with the client the header named (corral_worker_event_peer_addr);
 * - a client process makes 20 requests in turn, each behind a header naming 127.0.0.9 (port
 *   4000 + i): each is answered by worker 2 with that client, though worker 1 got the
 *   connection first, with its header consumed (the address travels with the refusal);
 * - the primary handed worker 2 exactly the 20 connections (corral_primary_worker_stats), and
 *   corral_primary_worker_counter reports worker 1's refusals (every connection dealt to it);
 * - worker 1 asks for non-blocking connections (corral_worker_set_nonblocking) and gets each
 *   with O_NONBLOCK; worker 2 does not, and gets each blocking, the refused ones included;
 * - argument checks: fd -1 gives CORRAL_STATUS_INVALID_ARGUMENT naming `fd`, a closed fd
 *   CORRAL_STATUS_OS_ERROR (EBADF), a NULL worker CORRAL_STATUS_INVALID_ARGUMENT;
 *   corral_worker_room answers OK (a NULL worker: CORRAL_STATUS_INVALID_ARGUMENT). Its effect
 *   (dealt at once instead of after the retry delay) is timed in
 *   crates/corral-core/tests/refused_connections.rs.
 * Prints "ok" and exits 0 when every check passes; otherwise names the failing check.
 */
#include <corral.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define REQUESTS 20

struct state {
  int listening;
  uint16_t port;
  int exit_codes[3];
};

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  (void)p;
  struct state *s = userdata;
  switch (corral_event_kind(ev)) {
  case CORRAL_EVENT_LISTENING:
    s->listening++;
    s->port = corral_event_port(ev);
    break;
  case CORRAL_EVENT_EXIT: {
    uint64_t id = corral_event_worker_id(ev);
    if (id >= 1 && id <= 2) s->exit_codes[id] = corral_event_exit_code(ev);
    break;
  }
  default:
    break;
  }
}

/* Reads one line (up to the newline) from a connection, writes the answer, closes. */
static void answer(int fd, uint64_t id, const char *peer, uint16_t port) {
  read_request(fd);
  char line[96];
  int len = snprintf(line, sizeof line, "worker %llu peer %s:%u\n", (unsigned long long)id, peer,
                     (unsigned)port);
  if (write(fd, line, (size_t)len) != len) {
    /* The client went away: nothing to check here. */
  }
  close(fd);
}

/* The worker's loop; its exit code is a bit set of failed checks. */
static int worker_side(corral_worker *w, int refusing) {
  int bad = 0;
  int checked = 0;
  uint32_t lid = 0;
  if (refusing && corral_worker_set_nonblocking(w, true) != CORRAL_STATUS_OK) return 1;
  if (corral_worker_listen(w, "127.0.0.1:0", 0, &lid, NULL) != CORRAL_STATUS_OK) return 1;
  for (;;) {
    corral_worker_event *ev = NULL;
    if (corral_worker_next(w, 20000, &ev) != CORRAL_STATUS_OK) return bad | 2;
    if (ev == NULL) return bad | 4; /* 20 s without an event */
    uint32_t kind = corral_worker_event_kind(ev);
    if (kind == CORRAL_WORKER_EVENT_CONNECTION) {
      uint32_t listener = corral_worker_event_listener(ev);
      char peer[64] = "-";
      uint16_t peer_port = 0;
      (void)corral_worker_event_peer_addr(ev, peer, sizeof peer, &peer_port);
      int fd = corral_worker_event_take_fd(ev);
      if (listener != lid) bad |= 8;
      int flags = fcntl(fd, F_GETFL);
      if (flags < 0 || !(flags & O_NONBLOCK) != !refusing) bad |= 2048;
      if (!refusing) {
        answer(fd, corral_worker_id(w), peer, peer_port);
      } else {
        if (!checked) {
          checked = 1;
          if (corral_worker_refuse(w, listener, -1) != CORRAL_STATUS_INVALID_ARGUMENT ||
              !last_error_contains("fd"))
            bad |= 16;
          int gone = dup(fd);
          close(gone);
          if (corral_worker_refuse(w, listener, gone) != CORRAL_STATUS_OS_ERROR ||
              corral_last_error_errno() != EBADF)
            bad |= 32;
          if (corral_worker_refuse(NULL, listener, fd) != CORRAL_STATUS_INVALID_ARGUMENT) bad |= 64;
          /* Nothing refused yet on this listener: harmless. */
          if (corral_worker_room(w, listener) != CORRAL_STATUS_OK) bad |= 1024;
          if (corral_worker_room(NULL, listener) != CORRAL_STATUS_INVALID_ARGUMENT) bad |= 1024;
        }
        if (corral_worker_refuse(w, listener, fd) != CORRAL_STATUS_OK) bad |= 128;
      }
    }
    corral_worker_event_free(ev);
    if (kind == CORRAL_WORKER_EVENT_DISCONNECT) {
      if (corral_worker_disconnect(w) != CORRAL_STATUS_OK) bad |= 256;
      return bad;
    }
    if (kind == CORRAL_WORKER_EVENT_PRIMARY_GONE) return bad | 512;
  }
}

/* The client process: REQUESTS requests in turn; exit code 0 when worker 2 answered each. */
static int client_side(uint16_t port) {
  for (int i = 0; i < REQUESTS; i++) {
    int s = loopback_connect(port, 10);
    if (s < 0) return 10;
    char req[96];
    int len = snprintf(req, sizeof req, "PROXY TCP4 127.0.0.9 127.0.0.1 %d 80\r\nhello\n", 4000 + i);
    if (write(s, req, (size_t)len) != len) return 11;
    char buf[96] = {0};
    ssize_t n = read(s, buf, sizeof buf - 1);
    close(s);
    if (n <= 0) return 12; /* dropped or reset */
    char want[64];
    snprintf(want, sizeof want, "worker 2 peer 127.0.0.9:%d\n", 4000 + i);
    if (strcmp(buf, want) != 0) {
      fprintf(stderr, "client: got %s, want %s", buf, want);
      return 13;
    }
  }
  return 0;
}

int main(void) {
  struct state s = {0, 0, {-1, -1, -1}};
  corral_options *o = NULL;
  corral_primary *p = NULL;
  CHECK(corral_options_new(&o) == CORRAL_STATUS_OK, "options_new");
  CHECK(corral_options_set_event_callback(o, on_event, &s) == CORRAL_STATUS_OK, "callback");
  CHECK(corral_options_set_proxy_protocol(o, true) == CORRAL_STATUS_OK, "proxy_protocol");
  CHECK(corral_primary_new(o, &p) == CORRAL_STATUS_OK, "primary_new");
  corral_options_free(o);
  if (failures) return 1;

  for (int refusing = 1; refusing >= 0; refusing--) {
    uint64_t id = 0;
    corral_worker *w = NULL;
    CHECK(corral_primary_fork(p, &id, &w) == CORRAL_STATUS_OK, "fork");
    if (w) {
      int bad = worker_side(w, refusing);
      corral_worker_free(w);
      corral_primary_free(p);
      exit_with_checks(bad);
    }
  }
  CHECK(wait_listening(p, &s.listening, 2, 20), "both workers listen within 20 s");

  pid_t client = fork();
  if (client == 0) _exit(client_side(s.port));
  CHECK(client > 0, "fork the client");
  int status = wait_client(p, client, 30);
  CHECK(status != -1, "the client finished within 30 s");
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "every request answered by worker 2");
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) fprintf(stderr, "client exit code %d\n", WEXITSTATUS(status));

  uint64_t handed = 0;
  CHECK(corral_primary_worker_stats(p, 2, NULL, &handed, NULL) == CORRAL_STATUS_OK, "stats of worker 2");
  CHECK(handed == REQUESTS, "worker 2 was handed each connection once");
  /* The same figures one by one (corral_primary_worker_counter): every connection dealt to
   * worker 1 came back (refused), none was taken back from a stalled channel. */
  uint64_t handed1 = 0, refused1 = 0, refused2 = 9, taken_back1 = 9, stalled1 = 9, uptime = 0, bad = 5;
  CHECK(corral_primary_worker_counter(p, 2, CORRAL_WORKER_COUNTER_HANDED_OFF, &handed) == CORRAL_STATUS_OK &&
            handed == REQUESTS, "counter: worker 2 handed off");
  CHECK(corral_primary_worker_counter(p, 1, CORRAL_WORKER_COUNTER_HANDED_OFF, &handed1) == CORRAL_STATUS_OK, "counter 1");
  CHECK(corral_primary_worker_counter(p, 1, CORRAL_WORKER_COUNTER_REFUSED, &refused1) == CORRAL_STATUS_OK, "counter 2");
  CHECK(refused1 >= 1 && refused1 == handed1, "worker 1 refused every connection dealt to it");
  CHECK(corral_primary_worker_counter(p, 2, CORRAL_WORKER_COUNTER_REFUSED, &refused2) == CORRAL_STATUS_OK &&
            refused2 == 0, "worker 2 refused none");
  CHECK(corral_primary_worker_counter(p, 1, CORRAL_WORKER_COUNTER_TAKEN_BACK, &taken_back1) == CORRAL_STATUS_OK &&
            taken_back1 == 0, "nothing taken back");
  CHECK(corral_primary_worker_counter(p, 1, CORRAL_WORKER_COUNTER_STALLED, &stalled1) == CORRAL_STATUS_OK &&
            stalled1 == 0, "worker 1 not stalled");
  CHECK(corral_primary_worker_counter(p, 1, CORRAL_WORKER_COUNTER_UPTIME_MS, &uptime) == CORRAL_STATUS_OK &&
            uptime > 0 && uptime < 120000, "uptime in ms");
  CHECK(corral_primary_worker_counter(p, 1, 0, &bad) == CORRAL_STATUS_INVALID_ARGUMENT && bad == 5,
        "counter 0 is refused, out untouched");
  CHECK(corral_primary_worker_counter(p, 1, 99, &bad) == CORRAL_STATUS_INVALID_ARGUMENT, "counter 99 is refused");

  CHECK(corral_primary_shutdown(p, 10000) == CORRAL_STATUS_OK, "shutdown");
  CHECK(wait_workers_gone(p, 20), "the workers exited within 20 s");
  CHECK(s.exit_codes[1] == 0, "refusing worker's checks (exit code is a bit set of failed checks)");
  CHECK(s.exit_codes[2] == 0, "serving worker's checks");
  if (s.exit_codes[1] != 0 || s.exit_codes[2] != 0)
    fprintf(stderr, "worker exit codes %d %d\n", s.exit_codes[1], s.exit_codes[2]);
  corral_primary_free(p);
  if (failures == 0) printf("ok\n");
  return failures == 0 ? 0 : 1;
}
