/*
 * The supervisor through the C ABI, with real workers (this program re-executes itself as
 * them): a rolling reload under a client loop with zero failed requests, a SIGKILLed worker
 * restarted with cause "crash", scaling up and down, Prometheus text, a clean shutdown, and a
 * metrics endpoint whose idle or stuck clients hold up neither a GET nor corral_primary_free.
 * Prints figures and "ok"; exits non-zero naming the failed check.
 */
#include <corral.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...)                                   \
  do {                                              \
    fprintf(stderr, "FAIL: " __VA_ARGS__);          \
    fprintf(stderr, "\n");                          \
    exit(1);                                        \
  } while (0)

static void check(corral_status s, const char *what) {
  if (s != CORRAL_STATUS_OK) {
    char m[512];
    corral_last_error_message(m, sizeof m);
    FAIL("%s: %s (%s)", what, m, corral_status_str(s));
  }
}

/* ------------------------------------------------------------------ worker */

static int worker_main(void) {
  corral_worker *w;
  check(corral_worker_from_env(&w), "from_env");
  if (corral_worker_listen(w, "127.0.0.1:0", 0, NULL, NULL) != CORRAL_STATUS_OK) {
    char m[512];
    corral_last_error_message(m, sizeof m);
    /* Scaled down before it listened: nothing to serve. */
    if (strstr(m, "is disconnecting")) return 0;
    FAIL("listen: %s", m);
  }
  /* The engine read CORRAL_HEARTBEAT_MS with the other worker variables; the variable stays. */
  /* The primary's environment, as corral_options_add_env / _remove_env shaped it. */
  const char *added = getenv("CORRAL_TEST_ADDED"), *readded = getenv("CORRAL_TEST_READDED");
  if (!added || strcmp(added, "yes") != 0) FAIL("CORRAL_TEST_ADDED=%s", added ? added : "(unset)");
  if (getenv("CORRAL_TEST_DROPPED")) FAIL("CORRAL_TEST_DROPPED reached the worker");
  if (getenv("CORRAL_TEST_UNDONE")) FAIL("CORRAL_TEST_UNDONE (added, then removed) reached the worker");
  if (!readded || strcmp(readded, "again") != 0) FAIL("CORRAL_TEST_READDED=%s", readded ? readded : "(unset)");
  if (!getenv("CORRAL_TEST_KEPT")) FAIL("CORRAL_TEST_KEPT (the primary's) did not reach the worker");
  int beat = (int)corral_worker_heartbeat_interval_ms(w);
  const char *hb = getenv("CORRAL_HEARTBEAT_MS");
  if (beat != (hb ? atoi(hb) : 0))
    FAIL("heartbeat interval %d, CORRAL_HEARTBEAT_MS=%s", beat, hb ? hb : "(unset)");
  char reply[64];
  int rlen = snprintf(reply, sizeof reply, "worker %llu\n", (unsigned long long)corral_worker_id(w));
  for (;;) {
    corral_worker_event *e;
    if (corral_worker_next(w, beat > 0 ? beat : -1, &e) != CORRAL_STATUS_OK) return 0;
    if (beat > 0 && corral_worker_heartbeat(w, 0) != CORRAL_STATUS_OK) return 0;
    if (!e) continue;
    uint32_t kind = corral_worker_event_kind(e);
    if (kind == CORRAL_WORKER_EVENT_CONNECTION) {
      int fd = corral_worker_event_take_fd(e);
      char buf[256];
      if (read(fd, buf, sizeof buf) > 0 && write(fd, reply, (size_t)rlen) != rlen) { /* client gone */ }
      close(fd);
    } else if (kind == CORRAL_WORKER_EVENT_DISCONNECT) {
      corral_worker_event_free(e);
      int code = corral_worker_disconnect(w) == CORRAL_STATUS_OK ? 0 : 1;
      corral_worker_free(w);
      return code;
    } else if (kind == CORRAL_WORKER_EVENT_PRIMARY_GONE) {
      corral_worker_event_free(e);
      return 0;
    }
    corral_worker_event_free(e);
  }
}

/* ------------------------------------------------------------------ client */

static atomic_int port;
static atomic_int stop_client;
static atomic_long sent, failed;

static int request(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atomic_load(&port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {.tv_sec = 5};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0 && write(s, "hi\n", 3) == 3;
  char buf[64];
  ok = ok && read(s, buf, sizeof buf) > 0 && memcmp(buf, "worker ", 7) == 0;
  close(s);
  return ok;
}

static void *client(void *arg) {
  (void)arg;
  time_t t0 = time(NULL);
  while (!atomic_load(&stop_client) && atomic_load(&sent) < 50000 && time(NULL) - t0 < 30) {
    atomic_fetch_add(&sent, 1);
    if (!request()) atomic_fetch_add(&failed, 1);
  }
  return NULL;
}

/* ------------------------------------------------------------------ metrics clients */

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int metrics_connect(int mport) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) FAIL("socket: %s", strerror(errno));
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)mport);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) FAIL("connect to the metrics port %d: %s", mport, strerror(errno));
  struct timeval tv = {.tv_sec = 2};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return s;
}

/* ------------------------------------------------------------------ primary */

struct state {
  int listening, reloads, reload_ok, replaced, crash_restarts, scaled_to, shutdown_done, clean;
  uint64_t last_listening;
};

static void on_event(void *ud, corral_primary *p, const corral_event *ev) {
  (void)p;
  struct state *st = ud;
  char cause[32];
  switch (corral_event_kind(ev)) {
  case CORRAL_EVENT_LISTENING:
    st->listening++;
    st->last_listening = corral_event_worker_id(ev);
    atomic_store(&port, corral_event_port(ev));
    break;
  case CORRAL_EVENT_RELOAD:
    st->reloads++;
    st->reload_ok = corral_event_ok(ev);
    st->replaced = (int)corral_event_count(ev);
    printf("reload: ok=%d replaced=%d in %llu ms\n", st->reload_ok, st->replaced,
           (unsigned long long)corral_event_delay_ms(ev));
    break;
  case CORRAL_EVENT_RESTART:
    corral_event_cause(ev, cause, sizeof cause);
    printf("restart: slot %u worker %llu cause %s delay %llu ms signal %d\n", corral_event_slot(ev),
           (unsigned long long)corral_event_worker_id(ev), cause, (unsigned long long)corral_event_delay_ms(ev),
           corral_event_signal(ev));
    if (!strcmp(cause, "crash") && corral_event_signal(ev) == SIGKILL) st->crash_restarts++;
    break;
  case CORRAL_EVENT_SCALED:
    st->scaled_to = (int)corral_event_count(ev);
    break;
  case CORRAL_EVENT_SHUTDOWN_COMPLETE:
    st->shutdown_done = 1;
    st->clean = corral_event_clean(ev);
    break;
  default:
    break;
  }
}

static void run_until(corral_primary *p, int *flag, int want, const char *what) {
  time_t t0 = time(NULL);
  while (*flag < want) {
    if (time(NULL) - t0 > 20) FAIL("timed out waiting for %s", what);
    check(corral_primary_dispatch(p, 50), "dispatch");
  }
}

int main(int argc, char **argv) {
  (void)argc;
  if (corral_is_worker()) return worker_main();
  struct state st;
  memset(&st, 0, sizeof st);
  corral_options *o;
  corral_supervisor_options *so;
  corral_primary *p;
  check(corral_options_new(&o), "options");
  check(corral_options_set_exec(o, "/proc/self/exe", NULL, 0), "exec");
  /* The worker checks what it got: the primary's variables less the removed ones, plus the
     added ones, the last call per key deciding. */
  setenv("CORRAL_TEST_KEPT", "1", 1);
  setenv("CORRAL_TEST_DROPPED", "1", 1);
  setenv("CORRAL_TEST_READDED", "1", 1);
  check(corral_options_add_env(o, "CORRAL_TEST_ADDED", "yes"), "add_env");
  check(corral_options_remove_env(o, "CORRAL_TEST_DROPPED"), "remove_env");
  check(corral_options_add_env(o, "CORRAL_TEST_UNDONE", "x"), "add_env (undone)");
  check(corral_options_remove_env(o, "CORRAL_TEST_UNDONE"), "remove_env (undoes)");
  check(corral_options_remove_env(o, "CORRAL_TEST_READDED"), "remove_env (re-added)");
  check(corral_options_add_env(o, "CORRAL_TEST_READDED", "again"), "add_env (again)");
  /* A second set_exec keeps the environment set so far. */
  check(corral_options_set_exec(o, "/proc/self/exe", NULL, 0), "exec again");
  check(corral_options_set_event_callback(o, on_event, &st), "callback");
  check(corral_primary_new(o, &p), "primary");
  corral_options_free(o);
  (void)argv;

  check(corral_supervisor_options_new(&so), "supervisor options");
  check(corral_supervisor_options_set_restart(so, 50, 1000, 2.0, 0.0, 30000), "restart");
  check(corral_supervisor_options_set_workers(so, 2), "workers");
  check(corral_supervisor_options_set_reload(so, 5000, 100, 1, false), "reload");
  check(corral_supervisor_options_set_heartbeat(so, 50, 2000), "heartbeat");
  check(corral_supervisor_options_set_metrics(so, "127.0.0.1", 0), "metrics");

  /* Bad options are named. */
  corral_supervisor_options *bad;
  check(corral_supervisor_options_new(&bad), "bad options");
  check(corral_supervisor_options_set_restart(bad, 50, 1000, 0.5, 0.0, 1000), "restart (bad factor)");
  if (corral_primary_supervise(p, bad) != CORRAL_STATUS_INVALID_ARGUMENT) FAIL("factor 0.5 accepted");
  char msg[256];
  corral_last_error_message(msg, sizeof msg);
  if (!strstr(msg, "restart.factor")) FAIL("message does not name restart.factor: %s", msg);
  /* Ranges the engine enforces for both fronts: these used to abort (a 1 TB allocation) or
   * panic in the backoff arithmetic at the second restart. */
  if (corral_supervisor_options_set_workers(bad, UINT32_MAX) != CORRAL_STATUS_INVALID_ARGUMENT)
    FAIL("UINT32_MAX workers accepted");
  corral_last_error_message(msg, sizeof msg);
  if (!strstr(msg, "workers: must be an integer between 1 and 4096")) FAIL("workers message: %s", msg);
  check(corral_supervisor_options_set_restart(bad, 50, 1000, 1e300, 0.0, 1000), "restart (huge factor)");
  if (corral_primary_supervise(p, bad) != CORRAL_STATUS_INVALID_ARGUMENT) FAIL("factor 1e300 accepted");
  corral_last_error_message(msg, sizeof msg);
  if (!strstr(msg, "restart.factor: must be a number between 1 and 1000")) FAIL("factor message: %s", msg);
  check(corral_supervisor_options_set_restart(bad, 50, 1000, 2.0, 0.0, 1000), "restart");
  corral_supervisor_options_free(bad);

  check(corral_primary_supervise(p, so), "supervise");
  corral_supervisor_options_free(so);
  if (corral_primary_supervise(p, so) == CORRAL_STATUS_OK) FAIL("supervised twice");

  run_until(p, &st.listening, 2, "2 workers listening");

  /* Reload under load. */
  pthread_t t;
  pthread_create(&t, NULL, client, NULL);
  while (atomic_load(&sent) < 20) check(corral_primary_dispatch(p, 5), "dispatch");
  check(corral_primary_reload(p), "reload");
  if (corral_primary_reload(p) != CORRAL_STATUS_WRONG_STATE) FAIL("a second reload was not refused");
  run_until(p, &st.reloads, 1, "the reload report");
  long before = atomic_load(&sent);
  while (atomic_load(&sent) < before + 50) check(corral_primary_dispatch(p, 5), "dispatch");
  atomic_store(&stop_client, 1);
  while (pthread_tryjoin_np(t, NULL) != 0) check(corral_primary_dispatch(p, 5), "dispatch");
  printf("reload under load: %ld requests, %ld failed\n", atomic_load(&sent), atomic_load(&failed));
  if (!st.reload_ok || st.replaced != 2) FAIL("reload ok=%d replaced=%d", st.reload_ok, st.replaced);
  if (atomic_load(&failed) != 0) FAIL("%ld requests failed during the reload", atomic_load(&failed));

  /* A crash is restarted. */
  check(corral_primary_kill(p, st.last_listening, SIGKILL), "kill");
  run_until(p, &st.crash_restarts, 1, "a crash restart");

  /* Scale up, then down. */
  int target = st.listening + 1;
  check(corral_primary_scale(p, 3), "scale 3");
  run_until(p, &st.listening, target, "the third worker");
  check(corral_primary_scale(p, 1), "scale 1");
  time_t t0 = time(NULL);
  while (corral_primary_worker_count(p) != 1) {
    if (time(NULL) - t0 > 20) FAIL("scale down did not drain to 1 worker");
    check(corral_primary_dispatch(p, 50), "dispatch");
  }
  if (st.scaled_to != 1) FAIL("scaled_to %d", st.scaled_to);
  if (corral_primary_scale(p, 0) != CORRAL_STATUS_INVALID_ARGUMENT) FAIL("scale 0 accepted");
  if (corral_primary_scale(p, UINT32_MAX) != CORRAL_STATUS_INVALID_ARGUMENT) FAIL("scale UINT32_MAX accepted");

  /* Metrics. */
  char text[16384];
  size_t n = corral_primary_metrics_text(p, text, sizeof text);
  if (n == 0 || !strstr(text, "corral_worker_info{slot=\"0\"") || !strstr(text, "corral_restarts_total{cause=\"crash\"} 1"))
    FAIL("metrics text:\n%s", text);
  if (corral_primary_metrics_port(p) == 0) FAIL("no metrics port");

  check(corral_primary_shutdown(p, 3000), "shutdown");
  run_until(p, &st.shutdown_done, 1, "shutdown");
  if (!st.clean) FAIL("shutdown not clean");

  /* An idle metrics client and one stuck mid-request: a GET is still answered at once, and
   * freeing the primary does not wait on them (it used to, for up to 19 s). */
  int mport = corral_primary_metrics_port(p);
  int idle = metrics_connect(mport);
  int stuck = metrics_connect(mport);
  if (write(stuck, "GET /met", 8) != 8) FAIL("stuck client write: %s", strerror(errno));
  nanosleep(&(struct timespec){.tv_nsec = 100 * 1000 * 1000}, NULL);
  double t1 = now_s();
  int g = metrics_connect(mport);
  const char *get = "GET /metrics HTTP/1.1\r\nHost: c\r\n\r\n";
  if (write(g, get, strlen(get)) != (ssize_t)strlen(get)) FAIL("GET write: %s", strerror(errno));
  char head[64] = {0};
  ssize_t r = read(g, head, sizeof head - 1);
  double answered = now_s() - t1;
  close(g);
  if (r < 12 || strncmp(head, "HTTP/1.1 200", 12) != 0)
    FAIL("GET /metrics beside an idle and a stuck client: %s", r < 0 ? strerror(errno) : head);
  printf("metrics GET beside an idle and a stuck client: %.1f ms\n", answered * 1000);
  if (answered > 0.5) FAIL("GET /metrics beside an idle and a stuck client took %.0f ms", answered * 1000);
  double t2 = now_s();
  corral_primary_free(p);
  double freed = now_s() - t2;
  printf("corral_primary_free with an idle and a stuck metrics client: %.1f ms\n", freed * 1000);
  if (freed > 0.5) FAIL("corral_primary_free took %.0f ms with 2 metrics clients attached", freed * 1000);
  close(idle);
  close(stuck);
  printf("ok\n");
  return 0;
}
