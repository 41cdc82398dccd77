/*
 * CORRAL_POLICY_KERNEL_RR with workers that never call corral_worker_closed and hold every
 * connection open (idle keep-alive clients): the window (64) counts connections handed to a
 * worker and not taken yet, released as corral_worker_next hands each one out, so the kernel
 * keeps dealing.
 * - 2 workers answer "worker <id>\n" to each connection and keep it open until they leave;
 * - a client process holds HELD connections open (80 per worker, past the window), then makes
 *   FRESH more requests: each is answered, FRESH / 2 by each worker (exact turns);
 * - where the kernel path runs (no CORRAL_KERNEL_RR_FALLBACK warning: root, CAP_BPF), the
 *   primary dealt none of them (corral_primary_worker_stats: handed_off 0): nothing went
 *   through the anchor. Without it (the fallback, rr through the primary) the primary dealt
 *   them all.
 * Prints "ok" and the figures, exits 0 when every check passes; otherwise names the failing
 * check.
 */
#include <corral.h>

#include <arpa/inet.h>
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

#define HELD 160
#define FRESH 40
#define WORKERS 2

struct state {
  int listening;
  uint16_t port;
  int fallback;
  int exit_codes[WORKERS + 1];
};

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  (void)p;
  struct state *s = userdata;
  switch (corral_event_kind(ev)) {
  case CORRAL_EVENT_LISTENING:
    s->listening++;
    s->port = corral_event_port(ev);
    break;
  case CORRAL_EVENT_WARNING: {
    char code[64] = {0};
    (void)corral_event_code(ev, code, sizeof code);
    if (!strcmp(code, "CORRAL_KERNEL_RR_FALLBACK")) s->fallback = 1;
    break;
  }
  case CORRAL_EVENT_EXIT: {
    uint64_t id = corral_event_worker_id(ev);
    if (id >= 1 && id <= WORKERS) s->exit_codes[id] = corral_event_exit_code(ev);
    break;
  }
  default:
    break;
  }
}

/* Reads one line (up to the newline) from a connection and writes the answer; keeps it open. */
static void answer(int fd, uint64_t id) {
  read_request(fd);
  char line[32];
  int len = snprintf(line, sizeof line, "worker %llu\n", (unsigned long long)id);
  if (write(fd, line, (size_t)len) != len) {
    /* The client went away: nothing to check here. */
  }
}

/* The worker's loop: never calls corral_worker_closed; its exit code is a bit set of failed
 * checks. */
static int worker_side(corral_worker *w) {
  static int held[HELD + FRESH];
  size_t n_held = 0;
  int bad = 0;
  uint32_t lid = 0;
  if (corral_worker_listen(w, "127.0.0.1:0", 0, &lid, NULL) != CORRAL_STATUS_OK) return 1;
  for (;;) {
    corral_worker_event *ev = NULL;
    if (corral_worker_next(w, 20000, &ev) != CORRAL_STATUS_OK) return bad | 2;
    if (ev == NULL) return bad | 4; /* 20 s without an event */
    uint32_t kind = corral_worker_event_kind(ev);
    if (kind == CORRAL_WORKER_EVENT_CONNECTION) {
      int fd = corral_worker_event_take_fd(ev);
      if (corral_worker_event_listener(ev) != lid) bad |= 8;
      answer(fd, corral_worker_id(w));
      if (n_held < sizeof held / sizeof held[0]) held[n_held++] = fd;
      else {
        bad |= 16; /* more connections than the client opened */
        close(fd);
      }
    }
    corral_worker_event_free(ev);
    if (kind == CORRAL_WORKER_EVENT_DISCONNECT) {
      for (size_t i = 0; i < n_held; i++) close(held[i]);
      if (corral_worker_disconnect(w) != CORRAL_STATUS_OK) bad |= 32;
      return bad;
    }
    if (kind == CORRAL_WORKER_EVENT_PRIMARY_GONE) return bad | 64;
  }
}

/* One request on a new connection; the answering worker's id, or -1. Keeps it open in *out
 * when out is not NULL. */
static int ask(uint16_t port, int *out) {
  int s = loopback_connect(port, 10);
  if (s < 0) return -1;
  char buf[32] = {0};
  ssize_t n = -1;
  if (write(s, "hello\n", 6) == 6) n = read(s, buf, sizeof buf - 1);
  unsigned long id = 0;
  int ok = n > 0 && sscanf(buf, "worker %lu", &id) == 1 && id >= 1 && id <= WORKERS;
  if (out && ok) *out = s;
  else close(s);
  return ok ? (int)id : -1;
}

/* The client process: HELD held connections, then FRESH short ones. Exit code 0 when every
 * one was answered and the fresh ones went FRESH / 2 to each worker. */
static int client_side(uint16_t port) {
  static int held[HELD];
  for (int i = 0; i < HELD; i++) {
    if (ask(port, &held[i]) < 0) return 10;
  }
  int per[WORKERS + 1] = {0};
  for (int i = 0; i < FRESH; i++) {
    int id = ask(port, NULL);
    if (id < 0) return 11;
    per[id]++;
  }
  for (int i = 0; i < HELD; i++) close(held[i]);
  for (int id = 1; id <= WORKERS; id++) {
    if (per[id] != FRESH / WORKERS) return 12;
  }
  return 0;
}

int main(void) {
  struct state s = {0};
  corral_options *o = NULL;
  corral_primary *p = NULL;
  CHECK(corral_options_new(&o) == CORRAL_STATUS_OK, "options_new");
  CHECK(corral_options_set_policy(o, CORRAL_POLICY_KERNEL_RR) == CORRAL_STATUS_OK, "kernel-rr");
  CHECK(corral_options_set_event_callback(o, on_event, &s) == CORRAL_STATUS_OK, "callback");
  CHECK(corral_primary_new(o, &p) == CORRAL_STATUS_OK, "primary_new");
  corral_options_free(o);
  if (failures) return 1;

  for (int i = 0; i < WORKERS; i++) {
    uint64_t id = 0;
    corral_worker *w = NULL;
    CHECK(corral_primary_fork(p, &id, &w) == CORRAL_STATUS_OK, "fork");
    if (w) {
      int bad = worker_side(w);
      corral_worker_free(w);
      corral_primary_free(p);
      exit_with_checks(bad);
    }
  }
  CHECK(wait_listening(p, &s.listening, WORKERS, 20), "both workers listen within 20 s");

  pid_t client = fork();
  if (client == 0) _exit(client_side(s.port));
  CHECK(client > 0, "fork the client");
  int status = wait_client(p, client, 40);
  CHECK(status != -1, "the client finished within 40 s");
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "every request answered, the fresh ones in exact turns");
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
    fprintf(stderr, "client exit code %d\n", WEXITSTATUS(status));

  uint64_t dealt = 0;
  for (uint64_t id = 1; id <= WORKERS; id++) {
    uint64_t handed = 0;
    CHECK(corral_primary_worker_stats(p, id, NULL, &handed, NULL) == CORRAL_STATUS_OK, "stats");
    dealt += handed;
  }
  printf("kernel-rr%s, %d held + %d new connections, workers never call corral_worker_closed: "
         "%llu dealt by the primary\n",
         s.fallback ? " (fallback: rr)" : "", HELD, FRESH, (unsigned long long)dealt);
  if (s.fallback) CHECK(dealt == HELD + FRESH, "the fallback's rr deals every connection");
  else CHECK(dealt == 0, "the kernel path stays on: nothing dealt from the anchor");

  CHECK(corral_primary_shutdown(p, 10000) == CORRAL_STATUS_OK, "shutdown");
  CHECK(wait_workers_gone(p, 20), "the workers exited within 20 s");
  for (int id = 1; id <= WORKERS; id++) {
    CHECK(s.exit_codes[id] == 0, "worker's checks (exit code is a bit set of failed checks)");
    if (s.exit_codes[id] != 0) fprintf(stderr, "worker %d exit code %d\n", id, s.exit_codes[id]);
  }
  corral_primary_free(p);
  if (failures == 0) printf("ok\n");
  return failures == 0 ? 0 : 1;
}
