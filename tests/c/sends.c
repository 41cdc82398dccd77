/*
 * Sends at the edges, from both sides of a fork-mode cluster:
 * - sizes: a large but valid buffer (a 30 GiB read-only mapping that is never touched) and
 *   SIZE_MAX are refused with CORRAL_STATUS_TOO_LARGE naming the limit, before any byte is
 *   read or copied (the process stays alive; reading 30 GiB would fault it in or abort);
 * - disconnected channels: after corral_worker_disconnect, send/heartbeat/ready/listen always
 *   return CORRAL_STATUS_DISCONNECTED (never OK with the data dropped), and the primary's send
 *   to a worker whose channel closed returns CORRAL_STATUS_DISCONNECTED.
 * Prints "ok" and exits 0 when every check passes; otherwise names the failing check.
 */
#include <corral.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define BIG ((size_t)30 << 30)

struct state {
  uint64_t worker;
  int disconnected;
  int exit_code;
  corral_status send_after_disconnect;
  int release_fd; /* closing it lets the worker exit */
};

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  struct state *s = userdata;
  switch (corral_event_kind(ev)) {
  case CORRAL_EVENT_DISCONNECT:
    /* The channel is closed and the worker still runs (it waits for release_fd): the send
     * must say so instead of queueing data nobody reads. */
    s->disconnected = 1;
    s->send_after_disconnect = corral_primary_send(p, s->worker, (const uint8_t *)"late", 4);
    close(s->release_fd);
    s->release_fd = -1;
    break;
  case CORRAL_EVENT_EXIT:
    s->exit_code = corral_event_exit_code(ev);
    break;
  default:
    break;
  }
}

/* The worker's checks; its exit code is a bit set of the failed ones. */
static int worker_side(corral_worker *w, const uint8_t *big, int release) {
  int bad = 0;
  char byte;
  if (corral_worker_send(w, big, BIG) != CORRAL_STATUS_TOO_LARGE) bad |= 1;
  if (!last_error_contains("67108864")) bad |= 2;
  if (corral_worker_send(w, big, SIZE_MAX) != CORRAL_STATUS_TOO_LARGE) bad |= 4;
  if (corral_worker_send(w, NULL, 5) != CORRAL_STATUS_INVALID_ARGUMENT) bad |= 8;
  if (corral_worker_send(w, (const uint8_t *)"hi", 2) != CORRAL_STATUS_OK) bad |= 16;
  if (corral_worker_ready(w) != CORRAL_STATUS_OK) bad |= 16;
  if (corral_worker_disconnect(w) != CORRAL_STATUS_OK) bad |= 32;
  /* Right after the goodbye (the primary may not have read it yet) and for a while after
   * (it has closed its end by then): the same answer every time. */
  for (int i = 0; i < 50; i++) {
    if (corral_worker_send(w, (const uint8_t *)"lost?", 5) != CORRAL_STATUS_DISCONNECTED) bad |= 64;
    if (corral_worker_heartbeat(w, 0) != CORRAL_STATUS_DISCONNECTED) bad |= 64;
    if (corral_worker_ready(w) != CORRAL_STATUS_DISCONNECTED) bad |= 64;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  if (!last_error_contains("disconnected")) bad |= 128;
  if (corral_worker_listen(w, "127.0.0.1:0", 0, NULL, NULL) != CORRAL_STATUS_DISCONNECTED) bad |= 128;
  corral_worker_event *e = NULL;
  if (corral_worker_next(w, 0, &e) != CORRAL_STATUS_DISCONNECTED) bad |= 128;
  if (!last_error_contains("this worker has disconnected")) bad |= 128; /* not "the primary is gone" */
  /* Stay alive until the primary has tried its own send to this closed channel. */
  while (read(release, &byte, 1) > 0) {
  }
  return bad;
}

int main(void) {
  /* Never touched: PROT_READ and MAP_NORESERVE, so it costs neither memory nor commit. */
  const uint8_t *big = mmap(NULL, BIG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (big == MAP_FAILED) {
    perror("mmap 30 GiB");
    return 1;
  }
  int release[2];
  if (pipe(release)) {
    perror("pipe");
    return 1;
  }
  struct state s = {0, 0, -1, CORRAL_STATUS_OK, release[1]};
  corral_options *o = NULL;
  corral_primary *p = NULL;
  corral_worker *w = NULL;
  CHECK(corral_options_new(&o) == CORRAL_STATUS_OK, "options_new");
  CHECK(corral_options_set_event_callback(o, on_event, &s) == CORRAL_STATUS_OK, "callback");
  CHECK(corral_primary_new(o, &p) == CORRAL_STATUS_OK, "primary_new");
  corral_options_free(o);
  if (failures) return 1;

  CHECK(corral_primary_fork(p, &s.worker, &w) == CORRAL_STATUS_OK, "fork");
  if (w) {
    close(release[1]);
    int bad = worker_side(w, big, release[0]);
    corral_worker_free(w);
    corral_primary_free(p);
    exit_with_checks(bad);
  }
  close(release[0]);

  CHECK(corral_primary_send(p, s.worker, big, BIG) == CORRAL_STATUS_TOO_LARGE, "primary send of 30 GiB");
  CHECK(last_error_contains("67108864") && last_error_contains("64 MiB"), "the message names the limit");
  CHECK(corral_primary_send(p, s.worker, big, SIZE_MAX) == CORRAL_STATUS_TOO_LARGE, "primary send of SIZE_MAX");
  CHECK(corral_primary_send(p, s.worker, NULL, 5) == CORRAL_STATUS_INVALID_ARGUMENT, "primary send of NULL");
  CHECK(corral_primary_send(p, s.worker, big, 0) == CORRAL_STATUS_OK, "an empty message is fine");

  CHECK(wait_workers_gone(p, 20), "the worker exited within 20 s");
  CHECK(s.disconnected, "the primary saw the worker's disconnect");
  CHECK(s.send_after_disconnect == CORRAL_STATUS_DISCONNECTED,
        "primary send to a disconnected worker is CORRAL_STATUS_DISCONNECTED");
  CHECK(s.exit_code == 0, "worker-side checks (exit code is a bit set of failed checks)");
  if (s.exit_code != 0) fprintf(stderr, "worker exit code %d\n", s.exit_code);
  corral_primary_free(p);
  munmap((void *)big, BIG);
  if (failures == 0) printf("ok\n");
  return failures == 0 ? 0 : 1;
}
