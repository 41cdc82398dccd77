/*
 * hello_http: a prefork HTTP/1.1 server on corral, the README's demo.
 *
 *   hello_http [--workers N] [--host H] [--port P]
 *              [--policy rr|shared|kernel-rr|kernel-least|sticky|least|least-p2c]
 *              [--proxy-protocol on]
 *              [--sticky-prefix V4/V6] [--requests N | --seconds S]
 *
 * The primary forks N workers (default: one per CPU); they ask the primary to listen on
 * H:P (default 127.0.0.1:8080; port 0 picks a free port) and serve "hello from worker <id>
 * (pid <pid>)" with keep-alive, each with its own epoll loop. Connections come non-blocking
 * (corral_worker_set_nonblocking) and are read at once: one whose request is already there is
 * answered and closed without entering the epoll set. Ctrl-C (or SIGTERM) shuts down
 * gracefully: workers finish in-flight requests and close idle keep-alive connections.
 * --requests N stops after N requests in total (workers report each request to the primary),
 * --seconds S after S seconds; both exit 0 when everything drained.
 *
 * Prints "listening on HOST:PORT" once every worker listens, and at the end one line per
 * worker: "worker <id> served <n> requests".
 *
 * --policy sticky sends every connection of a client (by address, cut to --sticky-prefix,
 * e.g. 24/64) to the same worker; --policy least to the worker with the fewest open
 * connections (each worker reports a closed one with corral_worker_closed). --policy
 * kernel-least does the same in the kernel: each worker accepts on its own socket and an eBPF
 * program picks the least loaded one; corral_worker_closed then releases the connection in
 * memory shared with the program (no message). --policy kernel-rr deals in turn in the kernel,
 * skipping a worker with 64 connections queued at it and not taken yet (its window), which
 * corral_worker_next releases as it hands each one out: open connections do not count. --proxy-protocol on
 * expects a PROXY v1/v2 header on every connection (HAProxy send-proxy, nginx proxy_protocol):
 * the primary consumes it and routes on the client it names, and the answer then says
 * "hello from worker <id> (pid <pid>) to <client address>:<port>".
 */
#include <corral.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define BUF_SIZE 8192

struct config {
  long workers;
  const char *host;
  long port;
  uint32_t policy;
  int proxy_protocol;
  long v4_prefix, v6_prefix;
  long requests; /* 0: unbounded */
  long seconds;  /* 0: unbounded */
};

static void die_corral(const char *what) {
  char msg[512];
  corral_last_error_message(msg, sizeof msg);
  fprintf(stderr, "hello_http: %s: %s (%s)\n", what, msg,
          corral_status_str(corral_last_error_status()));
  exit(1);
}

static void usage(void) {
  fprintf(stderr,
          "usage: hello_http [--workers N] [--host H] [--port P]\n"
          "                  [--policy rr|shared|kernel-rr|kernel-least|sticky|least|least-p2c]\n"
          "                  [--proxy-protocol on] [--sticky-prefix V4/V6]\n"
          "                  [--requests N | --seconds S]\n");
  exit(2);
}

static long number(const char *s, long min, long max) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || *end || v < min || v > max) {
    fprintf(stderr, "hello_http: %s is not a number from %ld to %ld\n", s, min, max);
    usage();
  }
  return v;
}

/* ---------------------------------------------------------------- worker */

struct conn {
  int fd;
  uint32_t listener;
  char client[64]; /* "address:port" from a PROXY header, or empty */
  size_t len;
  int close_after; /* its last response is held (MSG_MORE) for the shutdown in close_conn */
  long responses; /* TCP_NODELAY is set at the second one (keep-alive), as nginx does */
  int watched;    /* in the epoll set */
  struct conn *prev, *next; /* every open connection, to close idle ones when draining */
  char buf[BUF_SIZE];
};

static struct conn *conns = NULL;
static int my_pid; /* getpid() once: glibc no longer caches it, a system call per response */

static int respond(struct conn *c, unsigned long long id, long *served) {
  /* Serve every complete request in the buffer (pipelining). Returns -1 to close. */
  for (;;) {
    char *end = NULL;
    for (size_t i = 3; i < c->len; i++) {
      if (c->buf[i - 3] == '\r' && c->buf[i - 2] == '\n' && c->buf[i - 1] == '\r' && c->buf[i] == '\n') {
        end = c->buf + i + 1;
        break;
      }
    }
    if (!end) return c->len == sizeof c->buf ? -1 : 0; /* headers too large: drop */
    size_t head = (size_t)(end - c->buf);
    c->buf[head - 1] = '\0';
    int http10 = strstr(c->buf, "HTTP/1.0\r\n") != NULL;
    int close_hdr = strcasestr(c->buf, "\r\nconnection: close") != NULL;
    int keep_hdr = strcasestr(c->buf, "\r\nconnection: keep-alive") != NULL;
    c->close_after = close_hdr || (http10 && !keep_hdr);
    char body[160];
    int blen = c->client[0]
                   ? snprintf(body, sizeof body, "hello from worker %llu (pid %d) to %s\n", id,
                              my_pid, c->client)
                   : snprintf(body, sizeof body, "hello from worker %llu (pid %d)\n", id,
                              my_pid);
    char out[256];
    int olen = snprintf(out, sizeof out,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s",
                        blen, c->close_after ? "Connection: close\r\n" : "", body);
    /* A second response on one connection may wait behind the first one's ACK (Nagle); the
     * first never does, and a Connection: close client gets only that one. */
    if (c->responses++ == 1) {
      int one = 1;
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    /* The last response before a close is held (MSG_MORE) for the shutdown() in close_conn,
     * which sends it and the FIN in one segment: two segments fewer per `Connection: close`
     * request (10 to 8, both sides counted: nstat TcpOutSegs), and the client wakes once for
     * both. Small responses fit the socket buffer; a short write means a stuck client: drop
     * it. */
    int more = 0;
#ifdef MSG_MORE
    if (c->close_after) more = MSG_MORE;
#endif
    if (send(c->fd, out, (size_t)olen, more) != olen) return -1;
    (*served)++;
    memmove(c->buf, end, c->len - head);
    c->len -= head;
    if (c->close_after) return -1;
  }
}

static void close_conn(corral_worker *w, int ep, struct conn *c, long *open_conns) {
  /* Under --policy least the primary counts open connections by these reports; under
   * kernel-least (open connections) the kernel's count drops by one. kernel-rr's window (64)
   * counts connections queued at this worker and not accepted yet, released by
   * corral_worker_next, so there this is a no-op, as under the other policies. A failure
   * means the primary is gone: nothing to tell. */
  if (corral_worker_closed(w, c->listener) != CORRAL_STATUS_OK) {
  }
  if (c->prev) c->prev->next = c->next;
  else conns = c->next;
  if (c->next) c->next->prev = c->prev;
  /* Out of the epoll set before close(): close() removes it only once every reference to the
   * socket is gone, and another process may still hold one for a moment (under rr the primary
   * closes its copy just after handing the connection over; a worker forked meanwhile inherits
   * it). Left in the set, the socket would still report events carrying `c`, freed below. */
  if (c->watched) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  /* A held response leaves now, with the FIN: after the report above, so that a client that
   * reads it to the end finds the connection counted closed (least deals the next one by
   * it). shutdown(), not close() alone: a close() with unread input (a client that pipelined
   * past its `Connection: close`) resets the connection and drops what is still held. Also
   * where there is no MSG_MORE: the response went alone, and the FIN still leaves before an
   * unread input can turn the close into a reset. */
  if (c->close_after) shutdown(c->fd, SHUT_WR);
  close(c->fd);
  free(c);
  (*open_conns)--;
}

/* Reads what `c` has and answers every complete request. Returns -1 to close the connection,
 * 0 to keep it (nothing has arrived yet, or what came is answered). */
static int on_readable(corral_worker *w, const struct config *cfg, unsigned long long id,
                       struct conn *c, long *served, int draining) {
  ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (r <= 0) return -1;
  c->len += (size_t)r;
  long before = *served;
  int rc = respond(c, id, served);
  if (cfg->requests > 0) {
    for (long k = before; k < *served; k++) {
      if (corral_worker_send(w, (const uint8_t *)"+", 1) != CORRAL_STATUS_OK) break;
    }
  }
  /* Draining: a keep-alive connection closes once its current request is answered. */
  return rc < 0 || (draining && c->len == 0) ? -1 : 0;
}

static int worker_main(corral_worker *w, const struct config *cfg) {
  unsigned long long id = (unsigned long long)corral_worker_id(w);
  my_pid = (int)getpid();
  char address[300];
  if (strchr(cfg->host, ':'))
    snprintf(address, sizeof address, "[%s]:%ld", cfg->host, cfg->port);
  else
    snprintf(address, sizeof address, "%s:%ld", cfg->host, cfg->port);
  /* Connections come non-blocking: accepted so (accept4's SOCK_NONBLOCK) where the worker
   * accepts them itself, with no fcntl of ours. */
  if (corral_worker_set_nonblocking(w, true) != CORRAL_STATUS_OK ||
      corral_worker_listen(w, address, 511, NULL, NULL) != CORRAL_STATUS_OK) {
    char msg[512];
    corral_last_error_message(msg, sizeof msg);
    fprintf(stderr, "worker %llu: %s\n", id, msg);
    return 1;
  }

  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, corral_worker_fd(w), &ev);
  long served = 0, open_conns = 0;
  int draining = 0, close_idle = 0;
  struct epoll_event events[MAX_EVENTS];

  for (;;) {
    if (draining && open_conns == 0) break;
    int n = epoll_wait(ep, events, MAX_EVENTS, draining ? 100 : -1);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      if (c == NULL) { /* the corral fd: connections and messages */
        corral_worker_event *e;
        while (corral_worker_next(w, 0, &e) == CORRAL_STATUS_OK && e) {
          uint32_t kind = corral_worker_event_kind(e);
          if (kind == CORRAL_WORKER_EVENT_CONNECTION) {
            int fd = corral_worker_event_take_fd(e);
            struct conn *nc = malloc(sizeof *nc);
            nc->fd = fd;
            nc->listener = corral_worker_event_listener(e);
            nc->client[0] = '\0';
            char host[46];
            uint16_t port;
            if (corral_worker_event_peer_addr(e, host, sizeof host, &port) > 0)
              snprintf(nc->client, sizeof nc->client, strchr(host, ':') ? "[%s]:%u" : "%s:%u",
                       host, (unsigned)port);
            nc->len = 0;
            nc->close_after = 0;
            nc->responses = 0;
            nc->watched = 0;
            nc->prev = NULL;
            nc->next = conns;
            if (conns) conns->prev = nc;
            conns = nc;
            open_conns++;
            /* Read at once, as Go's runtime does before it waits: a client sends its request
             * right after the handshake, so it is usually here by now, and a connection
             * answered and closed at once never enters the epoll set. */
            if (on_readable(w, cfg, id, nc, &served, draining) < 0) {
              close_conn(w, ep, nc, &open_conns);
            } else {
              struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = nc};
              epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
              nc->watched = 1;
            }
          } else if (kind == CORRAL_WORKER_EVENT_DISCONNECT) {
            /* Finish in-flight requests, close idle keep-alive connections, then leave. They
             * close after this batch: a later entry of `events` may still point at one. */
            draining = 1;
            close_idle = 1;
          } else if (kind == CORRAL_WORKER_EVENT_PRIMARY_GONE) {
            corral_worker_event_free(e);
            return 0;
          }
          corral_worker_event_free(e);
        }
        continue;
      }
      if (on_readable(w, cfg, id, c, &served, draining) < 0) close_conn(w, ep, c, &open_conns);
    }
    if (close_idle) {
      close_idle = 0;
      for (struct conn *k = conns, *next; k; k = next) {
        next = k->next;
        if (k->len == 0) close_conn(w, ep, k, &open_conns);
      }
    }
  }
  char report[64];
  int len = snprintf(report, sizeof report, "served %ld", served);
  if (corral_worker_send(w, (const uint8_t *)report, (size_t)len) != CORRAL_STATUS_OK ||
      corral_worker_disconnect(w) != CORRAL_STATUS_OK) {
    /* The primary is gone: nothing to report to. */
  }
  return 0;
}

/* --------------------------------------------------------------- primary */

struct state {
  const struct config *cfg;
  long listening;
  long requests;
  int shutting_down;
  int done;
  int clean;
  int worker_exit; /* set in a forked child: the exit code of its worker */
};

static void shutdown_now(corral_primary *p, struct state *st) {
  if (st->shutting_down) return;
  st->shutting_down = 1;
  if (corral_primary_shutdown(p, 10000) != CORRAL_STATUS_OK) die_corral("shutdown");
}

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  struct state *st = userdata;
  unsigned long long id = (unsigned long long)corral_event_worker_id(ev);
  switch (corral_event_kind(ev)) {
  case CORRAL_EVENT_LISTENING:
    if (++st->listening == st->cfg->workers) {
      char host[256];
      corral_event_address(ev, host, sizeof host);
      printf(strchr(host, ':') ? "listening on [%s]:%u\n" : "listening on %s:%u\n", host,
             (unsigned)corral_event_port(ev));
      fflush(stdout);
    }
    break;
  case CORRAL_EVENT_MESSAGE: {
    size_t len;
    const uint8_t *data = corral_event_data(ev, &len);
    if (len == 1 && data[0] == '+') {
      if (++st->requests >= st->cfg->requests) shutdown_now(p, st);
    } else if (len > 7 && memcmp(data, "served ", 7) == 0) {
      printf("worker %llu %.*s requests\n", id, (int)len, (const char *)data);
      fflush(stdout);
    }
    break;
  }
  case CORRAL_EVENT_EXIT:
    if (!st->shutting_down) {
      fprintf(stderr, "hello_http: worker %llu exited (code %d, signal %d)\n", id,
              corral_event_exit_code(ev), corral_event_signal(ev));
    }
    break;
  case CORRAL_EVENT_ERROR: {
    char msg[512];
    corral_event_error_message(ev, msg, sizeof msg);
    fprintf(stderr, "hello_http: worker %llu: %s\n", id, msg);
    break;
  }
  case CORRAL_EVENT_WARNING: { /* e.g. kernel-rr without CAP_BPF: that address runs rr */
    char code[64], msg[1024];
    corral_event_code(ev, code, sizeof code);
    corral_event_error_message(ev, msg, sizeof msg);
    fprintf(stderr, "hello_http: warning %s: %s\n", code, msg);
    break;
  }
  case CORRAL_EVENT_SIGNAL:
    st->shutting_down = 1;
    fprintf(stderr, "hello_http: signal %d, shutting down gracefully\n", corral_event_signal(ev));
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
  struct config cfg = {.workers = (long)corral_available_parallelism(), .host = "127.0.0.1",
                       .port = 8080, .policy = CORRAL_POLICY_RR, .v4_prefix = 32,
                       .v6_prefix = 128};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--workers")) cfg.workers = number(v, 1, 1024);
    else if (!strcmp(a, "--host")) cfg.host = v;
    else if (!strcmp(a, "--port")) cfg.port = number(v, 0, 65535);
    else if (!strcmp(a, "--requests")) cfg.requests = number(v, 1, 1L << 40);
    else if (!strcmp(a, "--seconds")) cfg.seconds = number(v, 1, 1L << 30);
    else if (!strcmp(a, "--policy")) {
      if (!strcmp(v, "rr")) cfg.policy = CORRAL_POLICY_RR;
      else if (!strcmp(v, "shared")) cfg.policy = CORRAL_POLICY_SHARED;
      else if (!strcmp(v, "kernel-rr")) cfg.policy = CORRAL_POLICY_KERNEL_RR;
      else if (!strcmp(v, "kernel-least")) cfg.policy = CORRAL_POLICY_KERNEL_LEAST;
      else if (!strcmp(v, "sticky")) cfg.policy = CORRAL_POLICY_STICKY;
      else if (!strcmp(v, "least")) cfg.policy = CORRAL_POLICY_LEAST;
      else if (!strcmp(v, "least-p2c")) cfg.policy = CORRAL_POLICY_LEAST_P2C;
      else usage();
    } else if (!strcmp(a, "--proxy-protocol")) {
      if (strcmp(v, "on") && strcmp(v, "off")) usage();
      cfg.proxy_protocol = !strcmp(v, "on");
    } else if (!strcmp(a, "--sticky-prefix")) {
      if (sscanf(v, "%ld/%ld", &cfg.v4_prefix, &cfg.v6_prefix) != 2) usage();
    } else usage();
    i++;
  }

  struct state st = {.cfg = &cfg};
  corral_options *opts;
  corral_primary *p;
  if (corral_options_new(&opts) != CORRAL_STATUS_OK) die_corral("options");
  /* Out-of-range prefixes are refused here, with a message naming the limit. */
  if (corral_options_set_policy(opts, cfg.policy) != CORRAL_STATUS_OK ||
      corral_options_set_proxy_protocol(opts, cfg.proxy_protocol) != CORRAL_STATUS_OK ||
      corral_options_set_sticky_prefix(opts, (uint32_t)cfg.v4_prefix, (uint32_t)cfg.v6_prefix) !=
          CORRAL_STATUS_OK ||
      corral_options_set_shutdown_signals(opts, true, 10000) != CORRAL_STATUS_OK ||
      corral_options_set_event_callback(opts, on_event, &st) != CORRAL_STATUS_OK)
    die_corral("options");
  if (corral_primary_new(opts, &p) != CORRAL_STATUS_OK) die_corral("primary");
  corral_options_free(opts);

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
  const char *name;
  switch (corral_primary_policy(p)) {
  case CORRAL_POLICY_RR: name = "rr"; break;
  case CORRAL_POLICY_SHARED: name = "shared"; break;
  case CORRAL_POLICY_KERNEL_RR: name = "kernel-rr"; break;
  case CORRAL_POLICY_KERNEL_LEAST: name = "kernel-least"; break;
  case CORRAL_POLICY_STICKY: name = "sticky"; break;
  case CORRAL_POLICY_LEAST: name = "least"; break;
  case CORRAL_POLICY_LEAST_P2C: name = "least-p2c"; break;
  default: name = "other"; break;
  }
  fprintf(stderr, "hello_http: primary %d, %ld workers, policy %s\n", (int)getpid(), cfg.workers,
          name);

  /* The embeddable form: dispatch with a timeout so --seconds can end the run. */
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (!st.done) {
    int timeout = -1;
    if (cfg.seconds > 0 && !st.shutting_down) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      long elapsed = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
      long left = cfg.seconds * 1000 - elapsed;
      if (left <= 0) {
        shutdown_now(p, &st);
        continue;
      }
      timeout = (int)left;
    }
    if (corral_primary_dispatch(p, timeout) != CORRAL_STATUS_OK) die_corral("dispatch");
  }
  corral_primary_free(p);
  return st.clean ? 0 : 1;
}
