/*
 * sticky: every connection of a client goes to the same worker (CORRAL_POLICY_STICKY).
 *
 *   sticky [--workers N] [--port P] [--prefix V4/V6] [--proxy-protocol on|off]
 *          [--connections M]
 *
 * The primary forks N workers (default 4) that listen on 127.0.0.1:P (default 0: a free port)
 * and prints "listening on 127.0.0.1:PORT" once all of them do. A client writes one line; the
 * worker answers "worker <id> client <address>\n" and closes. The primary maps each client to
 * a worker slot by consistent hashing, so a client keeps its worker as long as that worker
 * lives (a crashed worker's replacement inherits its clients).
 *
 * --prefix V4/V6 (default 32/128): addresses that share their first V4 bits (IPv4) or V6 bits
 * (IPv6) are one client, e.g. 24/64 for clients whose address rotates inside a network.
 * --proxy-protocol on: a proxy (HAProxy send-proxy, nginx stream proxy_protocol on) writes a
 * PROXY v1/v2 header first; the primary reads it, routes on the client it names and gives the
 * worker that address (corral_worker_event_peer_addr); the worker's socket starts at the
 * client's own bytes.
 *
 * The primary prints "worker <id> served <address>" for each connection (the workers tell it).
 * --connections M stops after M of them: graceful shutdown, exit 0.
 */
#include <corral.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct config {
  long workers, port, v4_prefix, v6_prefix, connections;
  int proxy_protocol;
};

static void die_corral(const char *what) {
  char msg[512];
  corral_last_error_message(msg, sizeof msg);
  fprintf(stderr, "sticky: %s: %s (%s)\n", what, msg, corral_status_str(corral_last_error_status()));
  exit(1);
}

static void usage(void) {
  fprintf(stderr, "usage: sticky [--workers N] [--port P] [--prefix V4/V6] [--proxy-protocol on|off]\n"
                  "              [--connections M]\n");
  exit(2);
}

static long number(const char *s, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < min || v > max) {
    fprintf(stderr, "sticky: %s is not a number from %ld to %ld\n", s, min, max);
    usage();
  }
  return v;
}

/* ---------------------------------------------------------------- worker */

/* The client's address: the PROXY header's when there was one, else the socket's peer. */
static void client_of(const corral_worker_event *e, int fd, char *out, size_t len) {
  if (corral_worker_event_peer_addr(e, out, len, NULL) > 0) return;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  snprintf(out, len, "?");
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) return;
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)len);
  else if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)len);
}

/* Reads the client's line (5 s at most), answers, closes. */
static void serve(int fd, unsigned long long id, const char *client) {
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[256];
  size_t got = 0;
  while (got < sizeof buf) {
    ssize_t n = read(fd, buf + got, sizeof buf - got);
    if (n <= 0) break;
    got += (size_t)n;
    if (memchr(buf, '\n', got)) break;
  }
  char line[128];
  int len = snprintf(line, sizeof line, "worker %llu client %s\n", id, client);
  if (write(fd, line, (size_t)len) != len) {
    /* The client left: nothing to tell it. */
  }
  close(fd);
}

static int worker_main(corral_worker *w, const struct config *cfg) {
  unsigned long long id = (unsigned long long)corral_worker_id(w);
  char address[64];
  snprintf(address, sizeof address, "127.0.0.1:%ld", cfg->port);
  if (corral_worker_listen(w, address, 511, NULL, NULL) != CORRAL_STATUS_OK) {
    char msg[512];
    corral_last_error_message(msg, sizeof msg);
    fprintf(stderr, "sticky: worker %llu: %s\n", id, msg);
    return 1;
  }
  for (;;) {
    corral_worker_event *e = NULL;
    if (corral_worker_next(w, -1, &e) != CORRAL_STATUS_OK) return 0; /* the primary is gone */
    if (!e) continue;
    uint32_t kind = corral_worker_event_kind(e);
    if (kind == CORRAL_WORKER_EVENT_CONNECTION) {
      char client[INET6_ADDRSTRLEN];
      int fd = corral_worker_event_take_fd(e);
      client_of(e, fd, client, sizeof client);
      serve(fd, id, client);
      char msg[80];
      int len = snprintf(msg, sizeof msg, "served %s", client);
      if (corral_worker_send(w, (const uint8_t *)msg, (size_t)len) != CORRAL_STATUS_OK) {
        /* The primary is gone: the next corral_worker_next says so. */
      }
    }
    corral_worker_event_free(e);
    if (kind == CORRAL_WORKER_EVENT_DISCONNECT) return corral_worker_disconnect(w) == CORRAL_STATUS_OK ? 0 : 1;
    if (kind == CORRAL_WORKER_EVENT_PRIMARY_GONE) return 0;
  }
}

/* --------------------------------------------------------------- primary */

struct state {
  const struct config *cfg;
  long listening, served;
  int shutting_down, done, clean;
};

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  struct state *st = userdata;
  unsigned long long id = (unsigned long long)corral_event_worker_id(ev);
  switch (corral_event_kind(ev)) {
  case CORRAL_EVENT_LISTENING:
    if (++st->listening == st->cfg->workers) {
      printf("listening on 127.0.0.1:%u\n", (unsigned)corral_event_port(ev));
      fflush(stdout);
    }
    break;
  case CORRAL_EVENT_MESSAGE: {
    size_t len;
    const uint8_t *data = corral_event_data(ev, &len);
    if (len > 7 && memcmp(data, "served ", 7) == 0) {
      printf("worker %llu %.*s\n", id, (int)len, (const char *)data);
      fflush(stdout);
      if (++st->served == st->cfg->connections && !st->shutting_down) {
        st->shutting_down = 1;
        if (corral_primary_shutdown(p, 10000) != CORRAL_STATUS_OK) die_corral("shutdown");
      }
    }
    break;
  }
  case CORRAL_EVENT_EXIT:
    if (!st->shutting_down)
      fprintf(stderr, "sticky: worker %llu exited (code %d, signal %d)\n", id, corral_event_exit_code(ev),
              corral_event_signal(ev));
    break;
  case CORRAL_EVENT_ERROR: {
    char msg[512];
    corral_event_error_message(ev, msg, sizeof msg);
    fprintf(stderr, "sticky: worker %llu: %s\n", id, msg);
    break;
  }
  case CORRAL_EVENT_SIGNAL:
    st->shutting_down = 1;
    break;
  case CORRAL_EVENT_SHUTDOWN_COMPLETE:
    st->done = 1;
    st->clean = corral_event_clean(ev);
    break;
  default:
    break;
  }
}

int main(int argc, char **argv) {
  struct config cfg = {.workers = 4, .port = 0, .v4_prefix = 32, .v6_prefix = 128};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--workers")) cfg.workers = number(v, 1, 1024);
    else if (!strcmp(a, "--port")) cfg.port = number(v, 0, 65535);
    else if (!strcmp(a, "--connections")) cfg.connections = number(v, 1, 1L << 40);
    else if (!strcmp(a, "--prefix")) {
      if (sscanf(v, "%ld/%ld", &cfg.v4_prefix, &cfg.v6_prefix) != 2) usage();
    } else if (!strcmp(a, "--proxy-protocol")) {
      if (strcmp(v, "on") && strcmp(v, "off")) usage();
      cfg.proxy_protocol = !strcmp(v, "on");
    } else usage();
    i++;
  }

  struct state st = {.cfg = &cfg};
  corral_options *opts;
  corral_primary *p;
  if (corral_options_new(&opts) != CORRAL_STATUS_OK) die_corral("options");
  /* A prefix out of range (33/..., .../129) is refused here, with a message naming the limit. */
  if (corral_options_set_policy(opts, CORRAL_POLICY_STICKY) != CORRAL_STATUS_OK ||
      corral_options_set_sticky_prefix(opts, (uint32_t)cfg.v4_prefix, (uint32_t)cfg.v6_prefix) !=
          CORRAL_STATUS_OK ||
      corral_options_set_proxy_protocol(opts, cfg.proxy_protocol) != CORRAL_STATUS_OK ||
      corral_options_set_shutdown_signals(opts, true, 10000) != CORRAL_STATUS_OK ||
      corral_options_set_event_callback(opts, on_event, &st) != CORRAL_STATUS_OK)
    die_corral("options");
  if (corral_primary_new(opts, &p) != CORRAL_STATUS_OK) die_corral("primary");
  corral_options_free(opts);
  if (corral_primary_policy(p) != CORRAL_POLICY_STICKY)
    fprintf(stderr, "sticky: CORRAL_SCHED_POLICY overrides the sticky policy here\n");

  for (long i = 0; i < cfg.workers; i++) {
    uint64_t id;
    corral_worker *w;
    if (corral_primary_fork(p, &id, &w) != CORRAL_STATUS_OK) die_corral("fork");
    if (w) { /* the child: be a worker, never return into the primary's code */
      int code = worker_main(w, &cfg);
      corral_worker_free(w);
      corral_primary_free(p);
      exit(code);
    }
  }
  while (!st.done) {
    if (corral_primary_dispatch(p, -1) != CORRAL_STATUS_OK) die_corral("dispatch");
  }
  corral_primary_free(p);
  return st.clean ? 0 : 1;
}
