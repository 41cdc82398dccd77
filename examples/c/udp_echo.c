/*
 * udp_echo: workers share one UDP socket that the primary bound (corral_worker_bind_datagram).
 *
 *   udp_echo [--workers N] [--port P] [--datagrams M]
 *
 * The primary forks N workers (default 2). Each asks for a UDP socket on 127.0.0.1:P (default
 * 0: one kernel-chosen port for all of them) and gets the same socket, whatever the scheduling
 * policy; the kernel hands each datagram to one of the workers reading it. Once every worker
 * is bound the primary prints "listening on udp 127.0.0.1:PORT". Workers answer every datagram
 * with "worker <id>: <datagram>" and tell the primary. With --datagrams M (bounded mode) the
 * primary shuts down gracefully after M answers, prints how many each worker answered and
 * exits 0; without it, it runs until SIGINT/SIGTERM.
 */
#include <corral.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_WORKERS 64

struct state {
  long workers, datagrams, bound, answered;
  long per_worker[MAX_WORKERS + 1]; /* by worker id */
  int finished;
};

static void fail(const char *what) {
  char msg[512];
  corral_last_error_message(msg, sizeof msg);
  fprintf(stderr, "udp_echo: %s: %s\n", what, msg);
  exit(1);
}

static int worker_main(corral_worker *w, const char *address) {
  int fd = -1;
  if (corral_worker_bind_datagram(w, address, 0, NULL, NULL, &fd) != CORRAL_STATUS_OK) {
    char msg[512];
    corral_last_error_message(msg, sizeof msg);
    fprintf(stderr, "udp_echo: worker %llu: %s\n", (unsigned long long)corral_worker_id(w), msg);
    return 1;
  }
  for (;;) {
    /* The socket is non-blocking and shared: another worker may take a datagram first. */
    struct pollfd pf[2] = {{fd, POLLIN, 0}, {corral_worker_fd(w), POLLIN, 0}};
    if (poll(pf, 2, -1) < 0 && errno != EINTR) return 1;
    char buf[1024], reply[1100];
    struct sockaddr_storage from;
    socklen_t len = sizeof from;
    ssize_t n;
    while ((n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len)) >= 0) {
      int m = snprintf(reply, sizeof reply, "worker %llu: %.*s", (unsigned long long)corral_worker_id(w),
                       (int)n, buf);
      sendto(fd, reply, (size_t)m, 0, (struct sockaddr *)&from, len);
      if (corral_worker_send(w, (const uint8_t *)"answered", 8) != CORRAL_STATUS_OK) break;
      len = sizeof from;
    }
    corral_worker_event *e = NULL;
    while (corral_worker_next(w, 0, &e) == CORRAL_STATUS_OK && e) {
      uint32_t kind = corral_worker_event_kind(e);
      corral_worker_event_free(e);
      if (kind == CORRAL_WORKER_EVENT_DISCONNECT || kind == CORRAL_WORKER_EVENT_PRIMARY_GONE) {
        /* Closing our copy: the primary closes its own once every worker has left. */
        close(fd);
        return corral_worker_disconnect(w) == CORRAL_STATUS_OK ? 0 : 1;
      }
    }
  }
}

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  struct state *st = userdata;
  uint64_t id = corral_event_worker_id(ev);
  switch (corral_event_kind(ev)) {
    case CORRAL_EVENT_LISTENING:
      if (corral_event_listener_kind(ev) == CORRAL_LISTENER_DATAGRAM && ++st->bound == st->workers) {
        char host[64];
        corral_event_address(ev, host, sizeof host);
        printf("listening on udp %s:%u\n", host, (unsigned)corral_event_port(ev));
        fflush(stdout);
      }
      break;
    case CORRAL_EVENT_MESSAGE:
      if (id <= MAX_WORKERS) st->per_worker[id]++;
      if (++st->answered == st->datagrams && corral_primary_shutdown(p, 5000) != CORRAL_STATUS_OK)
        fail("shutdown");
      break;
    case CORRAL_EVENT_EXIT:
      if (corral_event_exit_code(ev) != 0) st->finished = -1;
      break;
    case CORRAL_EVENT_SHUTDOWN_COMPLETE:
      if (st->finished == 0) st->finished = corral_event_clean(ev) ? 1 : -1;
      break;
    default:
      break;
  }
}

int main(int argc, char **argv) {
  struct state st;
  memset(&st, 0, sizeof st);
  st.workers = 2;
  long port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--workers")) st.workers = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--port")) port = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--datagrams")) st.datagrams = atol(argv[i + 1]);
  }
  if (st.workers < 1 || st.workers > MAX_WORKERS || port < 0 || port > 65535 || st.datagrams < 0) {
    fprintf(stderr, "usage: udp_echo [--workers 1..%d] [--port 0..65535] [--datagrams M]\n", MAX_WORKERS);
    return 2;
  }
  char address[32];
  snprintf(address, sizeof address, "127.0.0.1:%ld", port);
  corral_options *o;
  corral_primary *p;
  if (corral_options_new(&o) != CORRAL_STATUS_OK ||
      corral_options_set_event_callback(o, on_event, &st) != CORRAL_STATUS_OK ||
      corral_options_set_shutdown_signals(o, true, 5000) != CORRAL_STATUS_OK ||
      corral_primary_new(o, &p) != CORRAL_STATUS_OK)
    fail("setup");
  corral_options_free(o);
  for (long i = 0; i < st.workers; i++) {
    uint64_t id;
    corral_worker *w;
    if (corral_primary_fork(p, &id, &w) != CORRAL_STATUS_OK) fail("fork");
    if (w) {
      int code = worker_main(w, address);
      corral_worker_free(w);
      corral_primary_free(p);
      exit(code);
    }
  }
  if (corral_primary_run(p) != CORRAL_STATUS_OK) fail("run");
  corral_primary_free(p);
  for (long id = 1; id <= st.workers && id <= MAX_WORKERS; id++)
    printf("worker %ld answered %ld\n", id, st.per_worker[id]);
  return st.finished == 1 ? 0 : 1;
}
