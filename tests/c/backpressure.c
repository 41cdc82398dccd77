/*
 * Backpressure for a C primary: a worker that does not read makes corral_primary_send return
 * CORRAL_STATUS_WOULD_BLOCK once its queue reaches the limit (the primary's memory stays
 * bounded), and CORRAL_EVENT_DRAIN arrives once the worker reads again. Every message that
 * was accepted arrives, in order; none that was refused does.
 * Prints the measured figures and "ok", exits 0 when every check passes; otherwise names the
 * failing check. An alarm bounds the whole program.
 */
#include <corral.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define MSG 65536
#define LIMIT ((size_t)8 << 20)
#define BOUND (LIMIT + ((size_t)64 << 20))

static size_t rss_bytes(void) {
  unsigned long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f || fscanf(f, "%lu %lu", &size, &resident) != 2) {
    perror("/proc/self/statm");
    exit(1);
  }
  fclose(f);
  return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

struct state {
  uint64_t worker;
  int drains;
  long received; /* what the worker reported, -1 until then */
  int exit_code;
};

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  struct state *s = userdata;
  (void)p;
  switch (corral_event_kind(ev)) {
  case CORRAL_EVENT_DRAIN:
    if (corral_event_worker_id(ev) == s->worker) s->drains++;
    break;
  case CORRAL_EVENT_MESSAGE: {
    size_t len = 0;
    const uint8_t *d = corral_event_data(ev, &len);
    char text[32] = {0};
    memcpy(text, d, len < sizeof text - 1 ? len : sizeof text - 1);
    s->received = strtol(text, NULL, 10);
    break;
  }
  case CORRAL_EVENT_EXIT:
    s->exit_code = corral_event_exit_code(ev);
    break;
  default:
    break;
  }
}

/* Waits for the go byte, then reads every message (checking their sequence numbers) until the
 * primary asks it to disconnect; reports the count; exits 0, or 2 on a gap. */
static int worker_side(corral_worker *w, int go) {
  char byte;
  if (read(go, &byte, 1) != 1) return 3;
  uint32_t expect = 0;
  long got = 0;
  for (;;) {
    corral_worker_event *e = NULL;
    if (corral_worker_next(w, 10000, &e) != CORRAL_STATUS_OK || e == NULL) return 4;
    uint32_t kind = corral_worker_event_kind(e);
    if (kind == CORRAL_WORKER_EVENT_MESSAGE) {
      size_t len = 0;
      const uint8_t *d = corral_worker_event_data(e, &len);
      uint32_t seq;
      memcpy(&seq, d, sizeof seq);
      if (len != MSG || seq != expect) {
        corral_worker_event_free(e);
        return 2;
      }
      expect++;
      got++;
    }
    corral_worker_event_free(e);
    if (kind == CORRAL_WORKER_EVENT_DISCONNECT) break;
    if (kind == CORRAL_WORKER_EVENT_PRIMARY_GONE) return 5;
  }
  char text[32];
  int n = snprintf(text, sizeof text, "%ld", got);
  if (corral_worker_send(w, (const uint8_t *)text, (size_t)n) != CORRAL_STATUS_OK) return 6;
  return corral_worker_disconnect(w) == CORRAL_STATUS_OK ? 0 : 7;
}

int main(void) {
  alarm(30);
  corral_options *o = NULL;
  corral_primary *p = NULL;
  corral_worker *w = NULL;
  struct state s = {0, 0, -1, -1};
  int go[2];
  if (pipe(go)) {
    perror("pipe");
    return 1;
  }
  CHECK(corral_options_new(&o) == CORRAL_STATUS_OK, "options_new");
  CHECK(corral_options_set_send_queue_limit(o, 0) == CORRAL_STATUS_INVALID_ARGUMENT, "limit 0");
  CHECK(last_error_contains("65536 (64 KiB) to 1073741824 (1 GiB)"), "the message names the range");
  CHECK(corral_options_set_send_queue_limit(o, ((size_t)1 << 30) + 1) == CORRAL_STATUS_INVALID_ARGUMENT,
        "limit above 1 GiB");
  CHECK(corral_options_set_send_queue_limit(o, LIMIT) == CORRAL_STATUS_OK, "limit 8 MiB");
  CHECK(corral_options_set_event_callback(o, on_event, &s) == CORRAL_STATUS_OK, "callback");
  CHECK(corral_primary_new(o, &p) == CORRAL_STATUS_OK, "primary_new");
  corral_options_free(o);
  if (failures) return 1;

  CHECK(corral_primary_fork(p, &s.worker, &w) == CORRAL_STATUS_OK, "fork");
  if (w) {
    close(go[1]);
    int code = worker_side(w, go[0]);
    corral_worker_free(w);
    corral_primary_free(p);
    _exit(code);
  }
  close(go[0]);

  /* The worker does not read: send until refused, for at most 2 s or until the memory bound
   * is passed (without a limit the queue grows by about 300 MB/s). */
  uint8_t *msg = calloc(1, MSG);
  uint32_t seq = 0;
  corral_status st = CORRAL_STATUS_OK;
  size_t rss0 = rss_bytes(), rss = rss0;
  double t0 = now();
  while (now() - t0 < 2.0 && rss < BOUND) {
    memcpy(msg, &seq, sizeof seq);
    st = corral_primary_send(p, s.worker, msg, MSG);
    if (st != CORRAL_STATUS_OK) break;
    seq++;
    if (seq % 64 == 0) rss = rss_bytes();
  }
  rss = rss_bytes();
  printf("accepted %u messages of 64 KiB, then status %s; primary RSS %zu KiB before, %zu KiB after "
         "(limit %zu KiB, bound %zu KiB)\n",
         seq, corral_status_str(st), rss0 >> 10, rss >> 10, LIMIT >> 10, BOUND >> 10);
  CHECK(st == CORRAL_STATUS_WOULD_BLOCK, "a send past the limit is CORRAL_STATUS_WOULD_BLOCK");
  CHECK(last_error_contains("send queue limit of 8388608 bytes"), "the message names the limit");
  CHECK(rss < BOUND, "the primary's RSS stays under limit + 64 MiB");
  CHECK(corral_primary_send(p, s.worker, msg, MSG) == CORRAL_STATUS_WOULD_BLOCK, "still full");
  CHECK(s.drains == 0, "no drain before the worker reads");

  /* Let the worker read; the drain event follows. */
  if (write(go[1], "g", 1) != 1) perror("write");
  double t1 = now();
  while (s.drains == 0 && now() - t1 < 10.0) {
    if (corral_primary_dispatch(p, 100) != CORRAL_STATUS_OK) break;
  }
  printf("drain after %.0f ms\n", (now() - t1) * 1000);
  CHECK(s.drains == 1, "CORRAL_EVENT_DRAIN within 10 s of the worker reading");
  memcpy(msg, &seq, sizeof seq);
  CHECK(corral_primary_send(p, s.worker, msg, MSG) == CORRAL_STATUS_OK, "sending resumes after the drain");
  seq++;

  CHECK(corral_primary_shutdown(p, 10000) == CORRAL_STATUS_OK, "shutdown");
  CHECK(corral_primary_run(p) == CORRAL_STATUS_OK, "run until the shutdown completes");
  CHECK(s.exit_code == 0, "worker-side checks (exit code says which failed)");
  if (s.exit_code != 0) fprintf(stderr, "worker exit code %d\n", s.exit_code);
  CHECK(s.received == (long)seq, "the worker got every accepted message and no refused one");
  if (s.received != (long)seq) fprintf(stderr, "worker got %ld, accepted %u\n", s.received, seq);
  free(msg);
  close(go[1]);
  corral_primary_free(p);
  if (failures == 0) printf("ok\n");
  return failures == 0 ? 0 : 1;
}
