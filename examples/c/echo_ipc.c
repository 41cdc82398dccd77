/*
 * echo_ipc: the primary and its workers exchange messages both ways.
 *
 *   echo_ipc [--workers N] [--messages M]
 *
 * The primary forks N workers (default 2) and sends each M numbered messages ("ping <i>").
 * Every worker says hello first, then answers each ping with "pong <i> from <id>", in order.
 * The primary checks the order, counts, prints one summary line per worker, shuts down
 * gracefully and exits 0 if every answer came back in order.
 */
#include <corral.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORKERS 64

struct state {
  long workers, messages;
  long next_expected[MAX_WORKERS + 1]; /* by worker id */
  int hello[MAX_WORKERS + 1];
  long done_workers;
  int errors;
  int finished;
};

static void fail(const char *what) {
  char msg[512];
  corral_last_error_message(msg, sizeof msg);
  fprintf(stderr, "echo_ipc: %s: %s\n", what, msg);
  exit(1);
}

static int worker_main(corral_worker *w) {
  char buf[128];
  int n = snprintf(buf, sizeof buf, "hello from %llu", (unsigned long long)corral_worker_id(w));
  if (corral_worker_send(w, (const uint8_t *)buf, (size_t)n) != CORRAL_STATUS_OK) return 1;
  for (;;) {
    corral_worker_event *e;
    if (corral_worker_next(w, -1, &e) != CORRAL_STATUS_OK) return 1;
    uint32_t kind = corral_worker_event_kind(e);
    if (kind == CORRAL_WORKER_EVENT_MESSAGE) {
      size_t len;
      const uint8_t *data = corral_worker_event_data(e, &len);
      if (len > 5 && memcmp(data, "ping ", 5) == 0) {
        n = snprintf(buf, sizeof buf, "pong %.*s from %llu", (int)(len - 5), (const char *)data + 5,
                     (unsigned long long)corral_worker_id(w));
        if (corral_worker_send(w, (const uint8_t *)buf, (size_t)n) != CORRAL_STATUS_OK) return 1;
      }
    } else if (kind == CORRAL_WORKER_EVENT_DISCONNECT) {
      corral_worker_event_free(e);
      return corral_worker_disconnect(w) == CORRAL_STATUS_OK ? 0 : 1;
    } else if (kind == CORRAL_WORKER_EVENT_PRIMARY_GONE) {
      corral_worker_event_free(e);
      return 0;
    }
    corral_worker_event_free(e);
  }
}

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  struct state *st = userdata;
  uint64_t id = corral_event_worker_id(ev);
  if (corral_event_kind(ev) == CORRAL_EVENT_MESSAGE && id <= MAX_WORKERS) {
    size_t len;
    const char *data = (const char *)corral_event_data(ev, &len);
    char text[128];
    snprintf(text, sizeof text, "%.*s", (int)len, data);
    if (strncmp(text, "hello from ", 11) == 0) {
      st->hello[id] = 1;
      char ping[32];
      for (long i = 0; i < st->messages; i++) {
        int n = snprintf(ping, sizeof ping, "ping %ld", i);
        if (corral_primary_send(p, id, (const uint8_t *)ping, (size_t)n) != CORRAL_STATUS_OK) fail("send");
      }
    } else {
      long i;
      unsigned long long from;
      if (sscanf(text, "pong %ld from %llu", &i, &from) != 2 || from != id || i != st->next_expected[id]) {
        fprintf(stderr, "echo_ipc: out of order from worker %llu: %s\n", (unsigned long long)id, text);
        st->errors++;
      }
      st->next_expected[id] = i + 1;
      if (st->next_expected[id] == st->messages) {
        printf("worker %llu: hello, %ld pongs in order\n", (unsigned long long)id, st->messages);
        if (++st->done_workers == st->workers &&
            corral_primary_shutdown(p, 5000) != CORRAL_STATUS_OK)
          fail("shutdown");
      }
    }
  } else if (corral_event_kind(ev) == CORRAL_EVENT_SHUTDOWN_COMPLETE) {
    st->finished = corral_event_clean(ev) ? 1 : -1;
  }
}

int main(int argc, char **argv) {
  struct state st;
  memset(&st, 0, sizeof st);
  st.workers = 2;
  st.messages = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--workers")) st.workers = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--messages")) st.messages = atol(argv[i + 1]);
  }
  if (st.workers < 1 || st.workers > MAX_WORKERS || st.messages < 1) {
    fprintf(stderr, "usage: echo_ipc [--workers 1..%d] [--messages M>0]\n", MAX_WORKERS);
    return 2;
  }
  corral_options *o;
  corral_primary *p;
  if (corral_options_new(&o) != CORRAL_STATUS_OK ||
      corral_options_set_event_callback(o, on_event, &st) != CORRAL_STATUS_OK ||
      corral_primary_new(o, &p) != CORRAL_STATUS_OK)
    fail("setup");
  corral_options_free(o);
  for (long i = 0; i < st.workers; i++) {
    uint64_t id;
    corral_worker *w;
    if (corral_primary_fork(p, &id, &w) != CORRAL_STATUS_OK) fail("fork");
    if (w) {
      int code = worker_main(w);
      corral_worker_free(w);
      corral_primary_free(p);
      exit(code);
    }
  }
  if (corral_primary_run(p) != CORRAL_STATUS_OK) fail("run");
  corral_primary_free(p);
  printf("%s\n", st.errors == 0 && st.finished == 1 ? "all messages in order" : "FAILED");
  return st.errors == 0 && st.finished == 1 ? 0 : 1;
}
