/*
 * corral_primary_run and corral_primary_dispatch called from the primary's own event callback
 * return CORRAL_STATUS_WRONG_STATE at once; the outer run keeps every event (the shutdown's
 * included) and returns when the shutdown completes. An alarm bounds the whole program: a
 * hang kills it with SIGALRM.
 * Prints "ok" and exits 0 when every check passes; otherwise names the failing check.
 */
#include <corral.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static int nested_done = 0;
static int shutdown_complete = 0;
static int exit_code = -1;

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  (void)userdata;
  switch (corral_event_kind(ev)) {
  case CORRAL_EVENT_ONLINE:
    if (nested_done++) break;
    /* Shut down first: a nested loop that got in would take the shutdown's events. */
    CHECK(corral_primary_shutdown(p, 5000) == CORRAL_STATUS_OK, "shutdown from the callback");
    CHECK(corral_primary_run(p) == CORRAL_STATUS_WRONG_STATE, "nested run is refused");
    CHECK(last_error_contains("corral_primary_run: already running on this primary"), "nested run message");
    CHECK(corral_primary_dispatch(p, 0) == CORRAL_STATUS_WRONG_STATE, "nested dispatch is refused");
    CHECK(last_error_contains("corral_primary_dispatch: already running on this primary"),
          "nested dispatch message");
    break;
  case CORRAL_EVENT_EXIT:
    exit_code = corral_event_exit_code(ev);
    break;
  case CORRAL_EVENT_SHUTDOWN_COMPLETE:
    shutdown_complete++;
    break;
  default:
    break;
  }
}

int main(void) {
  corral_options *o = NULL;
  corral_primary *p = NULL;
  corral_worker *w = NULL;
  uint64_t id = 0;
  alarm(20);
  CHECK(corral_options_new(&o) == CORRAL_STATUS_OK, "options_new");
  CHECK(corral_options_set_event_callback(o, on_event, NULL) == CORRAL_STATUS_OK, "callback");
  CHECK(corral_primary_new(o, &p) == CORRAL_STATUS_OK, "primary_new");
  corral_options_free(o);
  if (failures) return 1;
  CHECK(corral_primary_fork(p, &id, &w) == CORRAL_STATUS_OK, "fork");
  if (w) {
    /* Wait for the primary's disconnect request, then leave. */
    int code = 1;
    for (int i = 0; i < 200; i++) {
      corral_worker_event *e = NULL;
      if (corral_worker_next(w, 100, &e) != CORRAL_STATUS_OK) break;
      uint32_t kind = corral_worker_event_kind(e);
      corral_worker_event_free(e);
      if (kind == CORRAL_WORKER_EVENT_DISCONNECT || kind == CORRAL_WORKER_EVENT_PRIMARY_GONE) {
        code = corral_worker_disconnect(w) == CORRAL_STATUS_OK ? 0 : 2;
        break;
      }
    }
    corral_worker_free(w);
    corral_primary_free(p);
    _exit(code);
  }
  CHECK(corral_primary_run(p) == CORRAL_STATUS_OK, "the outer run returns after the shutdown");
  CHECK(nested_done == 1, "the callback ran its nested calls once");
  CHECK(shutdown_complete == 1, "the outer run saw CORRAL_EVENT_SHUTDOWN_COMPLETE once");
  CHECK(exit_code == 0, "the worker left cleanly");
  /* Outside any callback, run and dispatch work again (the mark was cleared). */
  CHECK(corral_primary_dispatch(p, 0) == CORRAL_STATUS_OK, "dispatch after run");
  corral_primary_free(p);
  if (failures == 0) printf("ok\n");
  return failures == 0 ? 0 : 1;
}
