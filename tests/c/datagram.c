/*
 * Datagram listeners and fd:N from C, under the round-robin policy (UDP is shared anyway):
 * - two forked workers call corral_worker_bind_datagram("127.0.0.1:0"): one socket, one port,
 *   CORRAL_EVENT_LISTENING with corral_event_listener_kind == CORRAL_LISTENER_DATAGRAM for
 *   each; datagrams sent to that port are answered by both workers;
 * - "fd:N" with a TCP listener and a UDP socket the primary created: corral_worker_listen and
 *   corral_worker_bind_datagram share them (LISTENING with their ports and kinds);
 * - CORRAL_LISTEN_REUSE_ADDR: another SO_REUSEADDR socket binds the listener's port;
 * - errors: a stream fd for a datagram bind is CORRAL_STATUS_OS_ERROR with EPROTOTYPE (fd_out
 *   untouched), a Unix path and a NULL fd_out are CORRAL_STATUS_INVALID_ARGUMENT;
 * - after corral_worker_unlisten and the workers' exits the port-0 socket is closed (the port
 *   binds again), while the primary's own fds are still open and bound.
 * Prints "ok" and exits 0 when every check passes; otherwise names the failing check.
 */
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 2

struct seen {
  int listening;
  uint16_t ports[4 * WORKERS];
  uint32_t kinds[4 * WORKERS];
  int reuse[4 * WORKERS]; /* the 127.0.0.2 listener of the CORRAL_LISTEN_REUSE_ADDR check */
  int exits, bad_exits;
};

/* A socket of `type` bound to 127.0.0.1:0 (listening for streams); its port in *port. */
static int loopback_socket(int type, uint16_t *port) {
  int s = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || (type == SOCK_STREAM && listen(s, 16) != 0) ||
      getsockname(s, (struct sockaddr *)&a, &len) != 0) {
    close(s);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return s;
}

/* Whether a UDP socket can bind 127.0.0.1:port now. */
static int udp_port_free(uint16_t port) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
  close(s);
  return ok;
}

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  (void)p;
  struct seen *s = userdata;
  switch (corral_event_kind(ev)) {
    case CORRAL_EVENT_LISTENING: {
      uint32_t kind = corral_event_listener_kind(ev);
      if (s->listening < 4 * WORKERS) {
        char addr[64];
        corral_event_address(ev, addr, sizeof addr);
        s->ports[s->listening] = corral_event_port(ev);
        s->kinds[s->listening] = kind;
        s->reuse[s->listening] = strcmp(addr, "127.0.0.2") == 0;
      }
      s->listening++;
      break;
    }
    case CORRAL_EVENT_EXIT:
      s->exits++;
      if (corral_event_exit_code(ev) != 0) {
        fprintf(stderr, "worker %llu exit code %d (its failed checks are printed above)\n",
                (unsigned long long)corral_event_worker_id(ev), corral_event_exit_code(ev));
        s->bad_exits++;
      }
      break;
    default:
      break;
  }
}

/* Answers every datagram waiting on `fd` with `reply`, pausing 5 ms after each: meanwhile the
 * other worker, also woken, reads the next one (so both answer some, whatever the scheduler). */
static void answer_all(int fd, const char *reply) {
  const struct timespec pause = {0, 5 * 1000 * 1000};
  char buf[256];
  struct sockaddr_storage from;
  for (;;) {
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
    if (n < 0) return; /* EAGAIN: the socket is non-blocking; another worker took it */
    sendto(fd, reply, strlen(reply), 0, (struct sockaddr *)&from, len);
    nanosleep(&pause, NULL);
  }
}

/* The worker's checks and its serving loop: 0, or a bit set of the failed checks (printed;
 * the exit code is 1 then, as an exit status keeps 8 bits only). */
static int worker_side(corral_worker *w, int tcp_fd, int udp_fd) {
  int bad = 0, fd = -1, ufd = -1, x = -1;
  uint32_t lid = 0;
  uint16_t port = 0, tport = 0;
  char addr[32], reply[64];
  if (corral_worker_bind_datagram(w, "127.0.0.1:0", 0, &lid, &port, &fd) != CORRAL_STATUS_OK) return 1;
  if (port == 0 || fd < 0 || !(fcntl(fd, F_GETFD) & FD_CLOEXEC) || !(fcntl(fd, F_GETFL) & O_NONBLOCK)) bad |= 2;
  snprintf(addr, sizeof addr, "fd:%d", tcp_fd);
  if (corral_worker_listen(w, addr, 0, NULL, &tport) != CORRAL_STATUS_OK || tport == 0) bad |= 4;
  if (corral_worker_bind_datagram(w, addr, 0, NULL, NULL, &x) != CORRAL_STATUS_OS_ERROR ||
      corral_last_error_errno() != EPROTOTYPE || x != -1)
    bad |= 8;
  snprintf(addr, sizeof addr, "fd:%d", udp_fd);
  if (corral_worker_bind_datagram(w, addr, 0, NULL, NULL, &ufd) != CORRAL_STATUS_OK) bad |= 16;
  if (corral_worker_bind_datagram(w, "unix:/tmp/corral-c-dgram.sock", 0, NULL, NULL, &x) !=
      CORRAL_STATUS_INVALID_ARGUMENT)
    bad |= 32;
  {
    /* CORRAL_LISTEN_REUSE_ADDR: another SO_REUSEADDR socket binds the same port. On 127.0.0.2:
     * "127.0.0.1:0" is the listener bound above, without the option (not part of the key). */
    uint16_t rport = 0;
    int rfd = -1;
    if (corral_worker_bind_datagram(w, "127.0.0.2:0", CORRAL_LISTEN_REUSE_ADDR, NULL, &rport, &rfd) != CORRAL_STATUS_OK) {
      bad |= 1024;
    } else {
      int other = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1;
      struct sockaddr_in a;
      memset(&a, 0, sizeof a);
      a.sin_family = AF_INET;
      a.sin_port = htons(rport);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1);
      setsockopt(other, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (bind(other, (struct sockaddr *)&a, sizeof a) != 0) bad |= 1024;
      close(other);
      close(rfd);
    }
  }
  if (corral_worker_bind_datagram(w, "127.0.0.1:0", 0, NULL, NULL, NULL) != CORRAL_STATUS_INVALID_ARGUMENT ||
      !last_error_contains("fd_out"))
    bad |= 64;
  snprintf(reply, sizeof reply, "worker %llu", (unsigned long long)corral_worker_id(w));
  time_t deadline = time(NULL) + 30;
  int done = 0;
  while (!done && time(NULL) < deadline) {
    struct pollfd pf[3] = {{fd, POLLIN, 0}, {ufd, POLLIN, 0}, {corral_worker_fd(w), POLLIN, 0}};
    poll(pf, 3, 100);
    answer_all(fd, reply);
    if (ufd >= 0) answer_all(ufd, reply);
    corral_worker_event *ev = NULL;
    while (!done && corral_worker_next(w, 0, &ev) == CORRAL_STATUS_OK && ev) {
      uint32_t k = corral_worker_event_kind(ev);
      if (k == CORRAL_WORKER_EVENT_DISCONNECT || k == CORRAL_WORKER_EVENT_PRIMARY_GONE) done = 1;
      corral_worker_event_free(ev); /* closes a connection from the fd:N listener, if any */
    }
  }
  if (!done) bad |= 128;
  close(fd);
  if (ufd >= 0) close(ufd);
  if (corral_worker_unlisten(w, lid) != CORRAL_STATUS_OK) bad |= 256;
  if (corral_worker_disconnect(w) != CORRAL_STATUS_OK) bad |= 512;
  if (bad) fprintf(stderr, "worker %llu: failed checks %#x\n", (unsigned long long)corral_worker_id(w), bad);
  return bad != 0;
}

int main(void) {
  struct seen s;
  memset(&s, 0, sizeof s);
  uint16_t tport = 0, uport = 0;
  int tcp_fd = loopback_socket(SOCK_STREAM, &tport);
  int udp_fd = loopback_socket(SOCK_DGRAM, &uport);
  CHECK(tcp_fd >= 0 && udp_fd >= 0, "the primary's own sockets");
  corral_options *o = NULL;
  corral_primary *p = NULL;
  CHECK(corral_options_new(&o) == CORRAL_STATUS_OK, "options_new");
  CHECK(corral_options_set_policy(o, CORRAL_POLICY_RR) == CORRAL_STATUS_OK, "policy");
  CHECK(corral_options_set_event_callback(o, on_event, &s) == CORRAL_STATUS_OK, "callback");
  CHECK(corral_primary_new(o, &p) == CORRAL_STATUS_OK, "primary_new");
  corral_options_free(o);
  if (failures) return 1;

  uint64_t ids[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    corral_worker *w = NULL;
    CHECK(corral_primary_fork(p, &ids[i], &w) == CORRAL_STATUS_OK, "fork");
    if (w) {
      int bad = worker_side(w, tcp_fd, udp_fd);
      corral_worker_free(w);
      corral_primary_free(p);
      exit_with_checks(bad);
    }
  }
  time_t deadline = time(NULL) + 20;
  while (s.listening < 4 * WORKERS && s.exits == 0 && time(NULL) < deadline) {
    if (corral_primary_dispatch(p, 100) != CORRAL_STATUS_OK) break;
  }
  CHECK(s.listening == 4 * WORKERS, "four LISTENING events per worker within 20 s");
  uint16_t zero_port = 0;
  int datagrams = 0, streams = 0;
  int reuses = 0;
  for (int i = 0; i < s.listening && i < 4 * WORKERS; i++) {
    if (s.reuse[i]) {
      reuses++;
      CHECK(s.kinds[i] == CORRAL_LISTENER_DATAGRAM, "the 127.0.0.2 listener is a datagram one");
    } else if (s.kinds[i] == CORRAL_LISTENER_STREAM) {
      streams++;
      CHECK(s.ports[i] == tport, "the fd:N stream listener has the primary's socket's port");
    } else if (s.kinds[i] == CORRAL_LISTENER_DATAGRAM) {
      datagrams++;
      if (s.ports[i] != uport) {
        if (zero_port == 0) zero_port = s.ports[i];
        CHECK(s.ports[i] == zero_port, "every worker's bind(0) got the same port");
      }
    } else {
      CHECK(0, "corral_event_listener_kind is STREAM or DATAGRAM for LISTENING");
    }
  }
  CHECK(streams == WORKERS && datagrams == 2 * WORKERS && reuses == WORKERS, "the kinds of the LISTENING events");
  CHECK(zero_port != 0, "the port-0 datagram listener");

  /* Datagrams to the shared port until both workers answered (at most 400 and 10 s). */
  int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct timeval tv = {0, 200000};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int answered[WORKERS + 1] = {0};
  int both = 0, via_fd = 0;
  time_t client_deadline = time(NULL) + 10;
  for (int i = 0; i < 400 && !both && time(NULL) < client_deadline; i++) {
    to.sin_port = htons(zero_port);
    sendto(c, "hi", 2, 0, (struct sockaddr *)&to, sizeof to);
    char buf[64];
    ssize_t n = recv(c, buf, sizeof buf - 1, 0);
    if (n <= 0) continue;
    buf[n] = 0;
    unsigned long long id = strtoull(buf + strlen("worker "), NULL, 10);
    for (int k = 0; k < WORKERS; k++)
      if (ids[k] == id) answered[k] = 1;
    both = 1;
    for (int k = 0; k < WORKERS; k++) both &= answered[k];
  }
  CHECK(both, "both workers answered datagrams on the shared socket");
  to.sin_port = htons(uport);
  for (int i = 0; i < 20 && !via_fd; i++) {
    char buf[64];
    sendto(c, "hi", 2, 0, (struct sockaddr *)&to, sizeof to);
    via_fd = recv(c, buf, sizeof buf, 0) > 0;
  }
  CHECK(via_fd, "a worker answered on the primary's UDP fd:N");
  close(c);
  CHECK(!udp_port_free(zero_port), "the shared port is held while workers hold it");

  for (int i = 0; i < WORKERS; i++) CHECK(corral_primary_disconnect(p, ids[i]) == CORRAL_STATUS_OK, "disconnect");
  CHECK(wait_workers_gone(p, 20), "the workers exited within 20 s");
  CHECK(s.exits == WORKERS && s.bad_exits == 0, "worker-side checks");
  CHECK(udp_port_free(zero_port), "the port-0 socket closed with its last worker");
  CHECK(fcntl(tcp_fd, F_GETFD) != -1 && fcntl(udp_fd, F_GETFD) != -1, "the primary's fds stay open");
  CHECK(!udp_port_free(uport), "the primary's UDP fd is still bound");
  corral_primary_free(p);
  close(tcp_fd);
  close(udp_fd);
  if (failures == 0) printf("ok\n");
  return failures == 0 ? 0 : 1;
}
