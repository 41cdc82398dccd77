/*
 * respawn: a supervisor that restarts workers that crash (exec mode: the program re-runs
 * itself as its workers).
 *
 *   respawn [--workers N] [--restarts R] [--crash-after-ms T]
 *
 * The primary starts N workers (default 2). Each worker listens on 127.0.0.1:0, serves for T
 * milliseconds (default 200), then crashes with abort(). The primary logs every exit and starts
 * a replacement after a short delay, until it has restarted R workers (default 4; 0 = forever),
 * then shuts down gracefully and prints "restarted R workers".
 * (Backoff with a crash-loop breaker is the supervisor's job: see the README.)
 */
#include <corral.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct state {
  long restarts_wanted, restarts, pending;
  int finished;
};

static void fail(const char *what) {
  char msg[512];
  corral_last_error_message(msg, sizeof msg);
  fprintf(stderr, "respawn: %s: %s\n", what, msg);
  exit(1);
}

static int worker_main(long crash_after_ms) {
  corral_worker *w;
  if (corral_worker_from_env(&w) != CORRAL_STATUS_OK) fail("worker");
  if (corral_worker_listen(w, "127.0.0.1:0", 0, NULL, NULL) != CORRAL_STATUS_OK) fail("listen");
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    corral_worker_event *e;
    if (corral_worker_next(w, 10, &e) != CORRAL_STATUS_OK) return 0;
    if (e) {
      uint32_t kind = corral_worker_event_kind(e);
      corral_worker_event_free(e); /* a connection not taken is closed here */
      if (kind == CORRAL_WORKER_EVENT_DISCONNECT) {
        int code = corral_worker_disconnect(w) == CORRAL_STATUS_OK ? 0 : 1;
        corral_worker_free(w);
        return code;
      }
      if (kind == CORRAL_WORKER_EVENT_PRIMARY_GONE) return 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (ms >= crash_after_ms) abort(); /* the bug this supervisor survives */
  }
}

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  struct state *st = userdata;
  switch (corral_event_kind(ev)) {
  case CORRAL_EVENT_EXIT:
    fprintf(stderr, "respawn: worker %llu (pid %d) exited, code %d signal %d\n",
            (unsigned long long)corral_event_worker_id(ev), corral_event_pid(ev),
            corral_event_exit_code(ev), corral_event_signal(ev));
    if (corral_event_exited_after_disconnect(ev)) break; /* we asked it to leave */
    if (st->restarts_wanted == 0 || st->restarts < st->restarts_wanted) {
      uint64_t id;
      usleep(50 * 1000); /* a fixed pause; the supervisor adds exponential backoff */
      if (corral_primary_spawn(p, &id) != CORRAL_STATUS_OK) fail("spawn");
      st->restarts++;
      printf("restarted: worker %llu\n", (unsigned long long)id);
      fflush(stdout);
    } else if (corral_primary_shutdown(p, 2000) != CORRAL_STATUS_OK) {
      fail("shutdown");
    }
    break;
  case CORRAL_EVENT_SHUTDOWN_COMPLETE:
    st->finished = 1;
    break;
  default:
    break;
  }
}

int main(int argc, char **argv) {
  long workers = 2, restarts = 4, crash_after = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--workers")) workers = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--restarts")) restarts = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--crash-after-ms")) crash_after = atol(argv[i + 1]);
  }
  if (corral_is_worker()) return worker_main(crash_after);
  if (workers < 1 || restarts < 0 || crash_after < 0) {
    fprintf(stderr, "usage: respawn [--workers N>0] [--restarts R>=0] [--crash-after-ms T>=0]\n");
    return 2;
  }

  struct state st = {.restarts_wanted = restarts};
  corral_options *o;
  corral_primary *p;
  if (corral_options_new(&o) != CORRAL_STATUS_OK) fail("options");
  /* Re-run this very program (with the same arguments) as each worker. */
  if (corral_options_set_exec(o, "/proc/self/exe", (const char *const *)argv + 1, (size_t)argc - 1) != CORRAL_STATUS_OK ||
      corral_options_set_shutdown_signals(o, true, 5000) != CORRAL_STATUS_OK ||
      corral_options_set_event_callback(o, on_event, &st) != CORRAL_STATUS_OK ||
      corral_primary_new(o, &p) != CORRAL_STATUS_OK)
    fail("setup");
  corral_options_free(o);
  for (long i = 0; i < workers; i++) {
    uint64_t id;
    if (corral_primary_spawn(p, &id) != CORRAL_STATUS_OK) fail("spawn");
  }
  if (corral_primary_run(p) != CORRAL_STATUS_OK) fail("run");
  corral_primary_free(p);
  printf("restarted %ld workers\n", st.restarts);
  return 0;
}
