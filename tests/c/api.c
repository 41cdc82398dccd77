/*
 * Bad input through the C ABI: every call returns a status and a message, never aborts.
 * Prints "ok" and exits 0 when every check passes; otherwise names the failing check.
 */
#include <corral.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "check.h"

static int child_code = -1;

static void on_event(void *userdata, corral_primary *p, const corral_event *ev) {
  (void)userdata;
  (void)p;
  if (corral_event_kind(ev) == CORRAL_EVENT_EXIT) child_code = corral_event_exit_code(ev);
}

int main(void) {
  corral_options *o = NULL;
  corral_primary *p = NULL;
  corral_worker *w = NULL;
  char small[8];

  CHECK(strcmp(corral_version(), CORRAL_VERSION_STRING) == 0, "version matches the header");
  CHECK(corral_available_parallelism() >= 1, "at least one CPU");
  CHECK(strcmp(corral_status_str(CORRAL_STATUS_OS_ERROR), "CORRAL_STATUS_OS_ERROR") == 0, "status_str");
  CHECK(strcmp(corral_status_str(12345), "CORRAL_STATUS_UNKNOWN") == 0, "unknown status_str");

  /* NULL handles and out-params name the parameter. */
  CHECK(corral_options_new(NULL) == CORRAL_STATUS_INVALID_ARGUMENT, "options_new(NULL)");
  CHECK(last_error_contains("out is NULL"), "message names 'out'");
  CHECK(corral_options_set_policy(NULL, CORRAL_POLICY_RR) == CORRAL_STATUS_INVALID_ARGUMENT, "NULL opts");
  CHECK(last_error_contains("opts is NULL"), "message names 'opts'");
  corral_options_free(NULL);
  corral_primary_free(NULL);
  corral_worker_free(NULL);
  corral_worker_event_free(NULL);

  /* snprintf semantics: the full length comes back, the copy is truncated and terminated. */
  size_t full = corral_last_error_message(NULL, 0);
  CHECK(full > sizeof small, "size query");
  CHECK(corral_last_error_message(small, sizeof small) == full && strlen(small) == sizeof small - 1,
        "truncated copy");

  CHECK(corral_options_new(&o) == CORRAL_STATUS_OK, "options_new");
  CHECK(corral_options_set_policy(o, 7) == CORRAL_STATUS_INVALID_ARGUMENT, "unknown policy");
  CHECK(last_error_contains("policy 7 is unknown"), "policy message");
  CHECK(last_error_contains("CORRAL_POLICY_KERNEL_RR (2)"), "policy message lists kernel-rr");
  CHECK(last_error_contains("CORRAL_POLICY_KERNEL_LEAST (6)"), "policy message lists kernel-least");
  CHECK(corral_options_set_policy(o, CORRAL_POLICY_KERNEL_RR) == CORRAL_STATUS_OK, "kernel-rr");
  CHECK(corral_options_set_policy(o, CORRAL_POLICY_KERNEL_LEAST) == CORRAL_STATUS_OK, "kernel-least");
  CHECK(corral_options_set_policy(o, CORRAL_POLICY_RR) == CORRAL_STATUS_OK, "back to rr");
  char code[32] = "x";
  CHECK(corral_event_code(NULL, code, sizeof code) == 0 && code[0] == '\0', "event code of NULL");
  CHECK(corral_event_kind(NULL) == 0 && corral_event_errno(NULL) == 0, "NULL event");
  /* Routing options: each refused value names its limit and leaves the options as they were. */
  CHECK(corral_options_set_policy(o, CORRAL_POLICY_STICKY) == CORRAL_STATUS_OK, "sticky");
  CHECK(corral_options_set_policy(o, CORRAL_POLICY_LEAST_P2C) == CORRAL_STATUS_OK, "least-p2c");
  CHECK(corral_options_set_sticky_prefix(o, 33, 64) == CORRAL_STATUS_INVALID_ARGUMENT, "prefix /33");
  CHECK(last_error_contains("expected at most /32 and /128"), "prefix message");
  CHECK(corral_options_set_sticky_prefix(o, 24, 64) == CORRAL_STATUS_OK, "prefix 24/64");
  CHECK(corral_options_set_sticky_key(o, 9, "sid") == CORRAL_STATUS_INVALID_ARGUMENT, "key kind 9");
  CHECK(last_error_contains("sticky key kind 9 is unknown"), "key kind message");
  CHECK(corral_options_set_sticky_key(o, CORRAL_STICKY_KEY_COOKIE, NULL) ==
            CORRAL_STATUS_INVALID_ARGUMENT, "NULL key name");
  CHECK(last_error_contains("name is NULL"), "key name message");
  CHECK(corral_options_set_sticky_key(o, CORRAL_STICKY_KEY_HEADER, "bad name") ==
            CORRAL_STATUS_INVALID_ARGUMENT, "key name with a space");
  CHECK(corral_options_set_sticky_key(o, CORRAL_STICKY_KEY_QUERY, "sid") == CORRAL_STATUS_OK, "query sid");
  CHECK(corral_options_set_sticky_key(o, CORRAL_STICKY_KEY_NONE, NULL) == CORRAL_STATUS_OK, "no key");
  CHECK(corral_options_set_peek(o, 9000, 0) == CORRAL_STATUS_INVALID_ARGUMENT, "peek 9000 bytes");
  CHECK(last_error_contains("routing.peek_bytes: must be between 64 and 8192 (got 9000)"), "peek message");
  CHECK(corral_options_set_peek(o, 0, 60001) == CORRAL_STATUS_INVALID_ARGUMENT, "peek 60001 ms");
  CHECK(corral_options_set_peek(o, 1024, 500) == CORRAL_STATUS_OK, "peek 1024 bytes 500 ms");
  CHECK(corral_options_set_proxy_protocol(o, true) == CORRAL_STATUS_OK, "proxy protocol");
  CHECK(corral_worker_closed(NULL, 1) == CORRAL_STATUS_INVALID_ARGUMENT, "closed: NULL worker");
  CHECK(corral_worker_set_nonblocking(NULL, true) == CORRAL_STATUS_INVALID_ARGUMENT,
        "set_nonblocking: NULL worker");
  CHECK(corral_worker_event_peer_addr(NULL, small, sizeof small, NULL) == 0, "peer of NULL");
  CHECK(corral_options_set_policy(o, CORRAL_POLICY_RR) == CORRAL_STATUS_OK, "back to rr");
  CHECK(corral_options_set_proxy_protocol(o, false) == CORRAL_STATUS_OK, "proxy protocol off");
  CHECK(corral_options_set_window(o, 0) == CORRAL_STATUS_INVALID_ARGUMENT, "window 0");
  CHECK(corral_options_set_max_listeners_per_worker(o, 0) == CORRAL_STATUS_INVALID_ARGUMENT,
        "max listeners 0");
  CHECK(last_error_contains("max_listeners_per_worker: must be an integer between 1 and 65536 (got 0)"),
        "max listeners message");
  CHECK(corral_options_set_max_listeners_per_worker(o, 65537) == CORRAL_STATUS_INVALID_ARGUMENT,
        "max listeners 65537");
  CHECK(corral_options_set_max_listeners_per_worker(o, 8) == CORRAL_STATUS_OK, "max listeners 8");
  CHECK(corral_options_set_orphan_listener_grace(o, 86400001) == CORRAL_STATUS_INVALID_ARGUMENT,
        "grace over a day");
  CHECK(last_error_contains("orphan_listener_grace: must be at most 86400000 ms (1 day) (got 86400001 ms)"),
        "grace message");
  CHECK(corral_options_set_orphan_listener_grace(o, 0) == CORRAL_STATUS_OK, "grace 0");
  CHECK(corral_options_set_stall_timeout(o, 5) == CORRAL_STATUS_INVALID_ARGUMENT, "stall 5 ms");
  CHECK(last_error_contains("stall_timeout: must be between 10 ms and 7 days (got 5 ms)"), "stall message");
  CHECK(corral_options_set_stall_timeout(o, 0) == CORRAL_STATUS_OK, "stall off");
  CHECK(corral_options_set_stall_timeout(o, 500) == CORRAL_STATUS_OK, "stall 500 ms");
  CHECK(corral_options_add_env(o, "A", "b") == CORRAL_STATUS_WRONG_STATE, "env before exec");
  CHECK(corral_options_remove_env(o, "A") == CORRAL_STATUS_WRONG_STATE, "env removal before exec");
  CHECK(corral_options_set_exec(o, "", NULL, 0) == CORRAL_STATUS_INVALID_ARGUMENT, "empty program");
  CHECK(corral_options_set_exec(o, "/bin/true", NULL, 2) == CORRAL_STATUS_INVALID_ARGUMENT, "argv NULL");
  CHECK(corral_options_set_exec(o, "/no/such/program", NULL, 0) == CORRAL_STATUS_OK, "set_exec");
  CHECK(corral_options_add_env(o, "BAD=KEY", "x") == CORRAL_STATUS_INVALID_ARGUMENT, "bad env key");
  CHECK(corral_options_remove_env(o, "") == CORRAL_STATUS_INVALID_ARGUMENT, "empty env key removed");
  CHECK(last_error_contains("environment key \"\" is empty or contains '='"), "remove_env message");
  CHECK(corral_options_remove_env(o, NULL) == CORRAL_STATUS_INVALID_ARGUMENT, "remove_env(NULL)");
  CHECK(corral_primary_new(o, NULL) == CORRAL_STATUS_INVALID_ARGUMENT, "primary_new(NULL out)");
  CHECK(corral_primary_new(o, &p) == CORRAL_STATUS_OK, "primary_new");

  uint64_t id = 0;
  CHECK(corral_primary_spawn(p, &id) == CORRAL_STATUS_OS_ERROR, "spawn of a missing program");
  CHECK(corral_last_error_errno() == ENOENT, "errno ENOENT");
  CHECK(last_error_contains("/no/such/program") && last_error_contains("ENOENT"), "spawn message");
  CHECK(id == 0, "out-param untouched on failure");
  CHECK(corral_primary_send(p, 99, (const uint8_t *)"x", 1) == CORRAL_STATUS_NO_SUCH_WORKER, "send to 99");
  CHECK(corral_primary_kill(p, 99, SIGTERM) == CORRAL_STATUS_NO_SUCH_WORKER, "kill 99");
  CHECK(corral_primary_kill(p, 99, 1000) == CORRAL_STATUS_INVALID_ARGUMENT, "signal out of range");
  CHECK(corral_primary_disconnect(p, 99) == CORRAL_STATUS_NO_SUCH_WORKER, "disconnect 99");
  CHECK(corral_primary_send(p, 1, NULL, 5) == CORRAL_STATUS_INVALID_ARGUMENT, "NULL data");
  CHECK(corral_primary_fd(p) >= 0, "pollable fd");
  CHECK(corral_primary_timeout_ms(p) == -1, "no deadline yet");
  CHECK(corral_primary_dispatch(p, 0) == CORRAL_STATUS_OK, "dispatch(0)");
  CHECK(corral_primary_worker_count(p) == 0, "no workers");
  CHECK(corral_primary_worker_stats(p, 1, NULL, NULL, NULL) == CORRAL_STATUS_NO_SUCH_WORKER, "stats");
  uint64_t counter = 77;
  CHECK(corral_primary_worker_counter(p, 1, CORRAL_WORKER_COUNTER_TAKEN_BACK, &counter) ==
            CORRAL_STATUS_NO_SUCH_WORKER, "counter of worker 1 (none started)");
  CHECK(corral_primary_worker_counter(p, 1, CORRAL_WORKER_COUNTER_TAKEN_BACK, NULL) ==
            CORRAL_STATUS_INVALID_ARGUMENT && last_error_contains("out is NULL"), "counter: NULL out");
  CHECK(corral_primary_worker_counter(NULL, 1, CORRAL_WORKER_COUNTER_TAKEN_BACK, &counter) ==
            CORRAL_STATUS_INVALID_ARGUMENT, "counter: NULL primary");
  CHECK(counter == 77, "counter: out-param untouched on failure");
  CHECK(corral_primary_shutdown(p, 0) == CORRAL_STATUS_OK, "shutdown");
  CHECK(corral_primary_spawn(p, &id) == CORRAL_STATUS_WRONG_STATE, "spawn after shutdown");
  CHECK(last_error_contains("shutting down"), "shutdown message");
  CHECK(corral_primary_run(p) == CORRAL_STATUS_OK, "run returns after shutdown completes");
  corral_primary_free(p);
  corral_options_free(o);

  /* Worker calls in a process no primary started. */
  CHECK(!corral_is_worker(), "not a worker");
  CHECK(corral_worker_from_env(&w) == CORRAL_STATUS_NOT_A_WORKER, "from_env");
  CHECK(last_error_contains("CORRAL_WORKER_ID"), "from_env message");
  setenv("CORRAL_WORKER_ID", "1", 1);
  setenv("CORRAL_CHANNEL_FD", "0", 1);
  CHECK(corral_worker_from_env(&w) != CORRAL_STATUS_OK, "bogus channel fd");
  CHECK(last_error_contains("not a corral channel"), "bogus channel message");
  CHECK(corral_worker_listen(NULL, "127.0.0.1:0", 0, NULL, NULL) == CORRAL_STATUS_INVALID_ARGUMENT, "NULL worker");

  /* A real worker in fork mode: bad addresses and a port in use are reported to it. */
  CHECK(corral_options_new(&o) == CORRAL_STATUS_OK, "options_new");
  CHECK(corral_options_set_event_callback(o, on_event, NULL) == CORRAL_STATUS_OK, "callback");
  CHECK(corral_primary_new(o, &p) == CORRAL_STATUS_OK, "primary_new");
  corral_options_free(o);
  int taken = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t sl = sizeof sa;
  if (bind(taken, (struct sockaddr *)&sa, sizeof sa) || listen(taken, 1) ||
      getsockname(taken, (struct sockaddr *)&sa, &sl)) {
    perror("bind");
    return 1;
  }
  CHECK(corral_primary_fork(p, &id, &w) == CORRAL_STATUS_OK, "fork");
  if (w) {
    int bad = 0;
    char addr[64];
    if (corral_worker_listen(w, "not an address", 0, NULL, NULL) != CORRAL_STATUS_INVALID_ARGUMENT) bad |= 1;
    if (!last_error_contains("invalid listen address")) bad |= 2;
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    if (corral_worker_listen(w, addr, 0, NULL, NULL) != CORRAL_STATUS_OS_ERROR) bad |= 4;
    if (corral_last_error_errno() != EADDRINUSE || !last_error_contains("EADDRINUSE")) bad |= 8;
    uint16_t port = 0;
    if (corral_worker_listen(w, "127.0.0.1:0", 0, NULL, &port) != CORRAL_STATUS_OK || port == 0) bad |= 16;
    if (corral_primary_dispatch(p, 0) != CORRAL_STATUS_WRONG_STATE) bad |= 32; /* the child's copy */
    if (corral_worker_disconnect(w) != CORRAL_STATUS_OK) bad |= 64;
    corral_worker_event *e = NULL;
    if (corral_worker_next(w, 0, &e) != CORRAL_STATUS_DISCONNECTED) bad |= 128;
    corral_worker_free(w);
    corral_primary_free(p);
    exit_with_checks(bad);
  }
  CHECK(id == 1, "first worker id is 1");
  /* Wait for the child's exit through the embeddable dispatch call. */
  for (int i = 0; i < 500 && corral_primary_worker_count(p) > 0; i++) {
    if (corral_primary_dispatch(p, 10) != CORRAL_STATUS_OK) break;
  }
  CHECK(corral_primary_worker_count(p) == 0, "child reaped");
  corral_primary_free(p);
  close(taken);
  /* The child's checks: its exit code is a bit set of failed checks; 0 means all passed. */
  CHECK(child_code == 0, "worker-side checks (exit code is a bit set of failed checks)");
  if (child_code != 0) fprintf(stderr, "child exit code %d\n", child_code);
  if (failures == 0) printf("ok\n");
  return failures == 0 ? 0 : 1;
}
