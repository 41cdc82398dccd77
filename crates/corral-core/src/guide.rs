//! # How corral works, in prose
//!
//! ## Roles
//! A process is a worker when a corral primary started it: exec mode passes the worker id and
//! the channel fd in `CORRAL_WORKER_ID` and `CORRAL_CHANNEL_FD` (removed once read, so the
//! worker's own children are not workers); fork mode returns the worker side from
//! `Primary::fork_worker` in the child. Any other process is a primary.
//!
//! ## Scheduling policies
//! *Round-robin* (`rr`, the default): the primary owns each listening socket, accepts with
//! `accept4(SOCK_CLOEXEC)` and sends every connection to the next worker of that listener over
//! its channel (`SCM_RIGHTS`), then closes its own copy at once. On a readiness edge it asks a
//! TCP listener how many connections are queued (`TCP_INFO`) and accepts exactly those, instead
//! of draining to `EAGAIN` (a failing `accept4` costs as much as a successful one on Linux). A worker has a window of
//! connections in flight (sent, not yet taken off its channel; default 64). A worker whose
//! window is full, or whose channel is backed up, is skipped; when every worker is full the
//! primary stops accepting and the kernel backlog holds new clients: real backpressure instead
//! of node:cluster's unbounded queue in the primary. Workers acknowledge connections in groups
//! of a quarter of the window (told in the listen answer), so the primary is not woken once
//! per connection twice. After a crash, clients wait in the backlog and the listener stays open
//! for the replacement; when the last worker of a listener leaves *gracefully* (disconnect,
//! shutdown, scale-down) the listener closes, as node:cluster's does, and new clients are
//! refused instead of queued for nobody.
//!
//! *Stalled workers* (dealt policies). A worker that stops reading its channel (SIGSTOP, a loop
//! blocked on a long computation, a debugger) would hold up to a window of clients. The primary
//! keeps the worker's end of every channel and, while a worker has connections it has not
//! taken, peeks at the head of its queue (`recv(MSG_PEEK)`, every quarter of the timeout): a
//! head that moved means it reads, an empty queue means it read everything. The same head for
//! 25 ms (`sticky`: `PrimaryOptions::stall_timeout`, default 250 ms, `CORRAL_STALL_TIMEOUT_MS`,
//! which the other policies use only when shorter) means it stopped or its loop is blocked
//! (unless `/proc/PID/schedstat` says it only waited for a CPU: then the others wait for the
//! same CPUs, and it keeps its connections):
//! it is dealt nothing more, the connections still unread in its channel are read back and dealt
//! to the others, and it gets a ping. A loop only blocked may wake up during that read-back, so
//! when messages wait in its queue too, only the connections ahead of the first one are read
//! back: a message is never taken out and written back behind one the worker read meanwhile
//! (a stopped worker's queue is read back whole, its messages written back in their order;
//! the portable backend, which cannot look into its stream channel, does that for any worker);
//! it rejoins as soon as it reads again (the connections read back count in
//! `WorkerInfo::taken_back` and `corral_worker_connections_taken_back_total`). A connection the
//! worker had already taken stays with it, as in any server. Under `sticky`, a worker that
//! takes one connection at a time, however slowly, is never stalled; under the other policies
//! a loop blocked 25 ms is busy, as node:cluster's `rr` hands a worker its next connection only
//! once it took the last (and leaves that one waiting for as long as the worker is stopped).
//! Under `kernel-rr` and `kernel-least` no connection passes a channel: the program itself
//! skips a worker that holds connections and took none for the same 25 ms (each worker stamps
//! the time of every one it takes in the group's shared map), and the primary's stall check,
//! reading the same map, takes its slot out of the group, accepts what its socket queued in
//! those 25 ms from the copy it keeps, deals it to the others and pings the worker; the slot
//! comes back when the worker reads again (kernel round-robin, below).
//!
//! *Refused connections* (round-robin). A worker may hand a connection back instead of serving
//! it (`Worker::refuse`; the Node front does it when the server is at its `maxConnections`, or
//! closed, as node:cluster's worker answers `accepted: false`). The primary puts it behind the
//! listener's waiting connections and deals it to the next worker with room, and skips the
//! refusing worker for that listener for 1 ms, doubling while it keeps refusing, up to 50 ms,
//! or until it says it has room again (`Worker::room`; the Node front does when a connection of
//! that server closes). When every worker refuses, the client waits in the primary (and new
//! ones in the backlog) until a worker takes it; it is reset only if the listener closes
//! meanwhile. node:cluster bounces such a connection between its full workers as fast as its
//! IPC goes (about half a core of the primary for as long as the client waits, measured with
//! `bench/max_connections.js`); corral's primary wakes a few times a second. Each refusal
//! counts in `WorkerInfo::refused` and `corral_worker_connections_refused_total`.
//!
//! *Shared* (`shared`, node:cluster's `SCHED_NONE`): the primary binds once and gives each
//! worker a duplicate of the listening fd; workers accept by themselves and the kernel picks
//! who wins. Cheapest for the primary, least even.
//!
//! *Kernel round-robin* (`kernel-rr`, `crate::steering`): exact turns with the primary out of
//! the data path. Per TCP address the primary binds an *anchor* socket (`SO_REUSEPORT`, port
//! 0 resolved once), loads a small eBPF program (`sys/linux/bpf.rs`) and attaches it to the
//! anchor's group. Each worker that listens gets its own socket of the group, bound by the
//! primary and put in a slot of the program's socket array, and accepts on it as in `shared`
//! mode (the primary keeps a copy to take back a stalled worker's queue, below, and closes it
//! on the worker's exit). Every SYN takes a ticket and goes to the next filled
//! slot: 300 connections over 3 workers are 100/100/100. A worker's death closes its socket and
//! the kernel asks the program where its queued connections go (`SELECT_OR_MIGRATE`, Linux
//! 5.14): to the live slots, none reset (`rr` gets there through its recovery, `shared` and
//! nginx's `reuseport` reset them). The slot is cleared on its exit or unlisten and given to
//! the next worker that listens (restart, reload, scale). With no slot filled, SYNs land on
//! the anchor: the primary accepts those and deals them as `rr` does, so clients wait for a
//! replacement instead of being refused. Each listen answer also carries the group's `load`
//! map (mmapable, one counter per slot), the worker's slot and when to release
//! (`LoadRelease`): the program adds 1 when it picks a slot, and under `kernel-rr` the worker
//! subtracts 1 as it takes the connection (`Worker::next_event` handing it out, the Node front
//! at `'connection'`: an atomic on shared memory, no syscall, no message). The count is then
//! what the `rr` window bounds, connections handed to a worker and not taken yet, not open
//! ones: a slot at the window (64) is skipped, so a stopped or hung worker is dealt no more
//! than its window (measured: 32 of 200 while the two others served the rest), and held
//! keep-alive connections never fill it (200 idle clients over 3 workers, then 60 new ones
//! 20/20/20 by the kernel, none dealt by the primary; counting open connections, 164 of the
//! 260 went through the anchor and the primary: `tests/kernel_least_policy.rs`). What the
//! primary deals from the anchor counts in the same slot until the worker reads it off the
//! channel; when every worker is at its window the primary deals from the anchor by `rr`'s
//! own rules (channel window, stall recovery) instead of leaving clients waiting. A worker
//! whose slot holds connections it took none of for the stall time (25 ms) is skipped by the
//! program; the primary, whose stall check reads the same counts and clocks (and the worker's
//! CPU times, as for a channel: a worker only starved of CPU is left alone), then *parks* the
//! slot (out of the program's socket array), accepts what the worker's socket had queued from
//! its own copy and deals it by `rr`'s rules, and stalls the worker's channel (what was dealt
//! there comes back, and a ping). The slot is put back with its count when the worker reads
//! the ping. So a blocked worker keeps no client waiting past about 25 ms plus one check
//! (`tests/stalled_worker.rs`: SIGSTOP under load, slowest request 31 ms; 0 of 8 paced
//! clients waited for a worker blocked 900 ms, against 2 of 8 before the take-back). The copy
//! is closed when the worker exits or unlistens, so its queue still migrates, as late as the
//! primary sees the exit. The price: a stall check that runs while the cluster runs, every
//! 25 ms, and every 6 ms while a worker is suspect (connections waiting at it, none taken for
//! half the stall time) or parked: a few atomic loads each.
//! `rr` stays primary-accept by default: `kernel-rr` is asked for by name.
//!
//! *Kernel least-loaded* (`kernel-least`): the same group and map, but the count is open
//! connections: the worker releases each one when it closes (`Worker::closed`,
//! `corral_worker_closed`, the Node front on the socket's `'close'`; a program that never
//! reports closes sits at its window and is dealt through the primary). The program
//! picks the filled slot with the smallest count (ties in turn, over up to 64 slots from the
//! turn), so a worker slow to finish its connections is dealt fewer. With service times of
//! 2/2/100 ms and 3 clients in a closed loop the slow worker got 5 to 19 of 300 requests
//! (median 9 over 30 runs on a loaded machine) where kernel-rr deals it its third
//! (`tests/kernel_least_policy.rs`). Where the program cannot be loaded the address runs
//! `least` (primary-accept), reported as for `kernel-rr`; where only the load-aware program is
//! refused (its mmapable map or BPF atomics), both policies run the plain round-robin program,
//! reported once. `corral run` refuses `kernel-least` and runs `kernel-rr` without the window:
//! the programs it starts accept on the socket themselves and release nothing.
//! Loading the program needs `CAP_BPF` (or root) in the initial user namespace, Linux 5.14 and
//! no seccomp filter on `bpf()`. Where any of that is missing, or the address is a Unix socket
//! or an adopted `fd:N`, that address runs `rr`, and the primary says so once with
//! `Event::Warning` (code `CORRAL_KERNEL_RR_FALLBACK`, the errno, and what to grant:
//! `setcap cap_bpf+ep` on the program or `AmbientCapabilities=CAP_BPF` in its systemd unit);
//! the cluster runs either way.
//!
//! *Sticky* (`sticky`): dealt like round-robin (window, stalls, refusals), but each connection
//! goes to the worker its client maps to. The client is its address cut to a prefix
//! (`RoutingOptions::address_key`, e.g. /24 and /64 for clients behind rotating addresses), or a
//! cookie, query parameter or header of its first request (`RoutingOptions::key`): the primary
//! peeks at the request (`MSG_PEEK`, nothing consumed, at most `peek_bytes` and `peek_timeout`)
//! and falls back to the address when the key is absent or late. Keys map to *slots* by
//! rendezvous hashing (`policy::sticky`): a supervised worker takes its supervisor slot, others
//! the first free one. A crashed worker's clients go to their second choice and come back to its
//! replacement, which takes the same slot; a fifth worker takes about a fifth of the clients and
//! moves nobody else (measured: 20 of 64 clients moved on a crash of one of 4 workers, 37 of 200
//! on a scale from 4 to 5; `tests/sticky.rs`). A worker without room sends the client to its
//! next choice, the same one every time.
//!
//! *Least* (`least`, `least-p2c`): each connection goes to the worker with the fewest open ones
//! (ties in turn; `least-p2c`: the better of two drawn at random, for large pools). The primary
//! counts a connection open from its handoff until the worker reports it closed (`Kind::Closed`:
//! `Worker::closed`, `corral_worker_closed`, the Node front on the socket's `'close'`), so a
//! worker stuck on slow requests is dealt fewer new ones (a worker taking 40 ms per request got
//! 0.067 of the connections against rr's 0.333, `tests/least.rs`).
//!
//! *The PROXY protocol* (`RoutingOptions::proxy_protocol`, every dealing policy): behind HAProxy
//! (`send-proxy`, `send-proxy-v2`), nginx `stream` with `proxy_protocol on` or an AWS NLB, every
//! connection starts with a header naming the client. The primary parks the connection in its
//! poller until the header is there (bounded like the key peek), reads exactly the header's
//! bytes, routes on the client it names, and sends that address with the fd
//! (`WorkerEvent::Connection::peer`, `corral_worker_event_peer_addr`, Node's
//! `socket.remoteAddress`). A missing, malformed or slow header closes that connection and
//! counts in `RoutingStats::proxy_errors`; the primary goes on. At most `MAX_PARKED` (1024)
//! connections wait at once, past that accepting stops and clients wait in the kernel backlog.
//! On Linux a primary that peeks (a sticky key or the PROXY protocol) sets `TCP_DEFER_ACCEPT`
//! on its TCP listeners: the kernel hands it a connection once its first bytes came, so the first
//! peek finds them and nothing is parked in the common case (the sticky primary's CPU at 8k
//! conn/s fell from 0.190 to 0.097 cores). A client that connects and sends nothing is accepted
//! about a second later and meets `peek_timeout` from there.
//! The address stays with the connection when it is dealt again: refused by a worker
//! (`Worker::refuse` takes the event's `peer` back; `corral_worker_refuse` and Node look it up
//! themselves) or read back from a stalled or dead worker's channel. Tested behind a real
//! HAProxy and a real nginx `stream` (`tests/proxy_protocol.rs`).
//!
//! `CORRAL_SCHED_POLICY=rr|shared|kernel-rr|kernel-least|sticky|least|least-p2c` overrides the
//! policy of a whole cluster.
//!
//! ## Listeners: limits, orphans and host names
//! Each listener costs the primary an fd, so one worker may hold at most
//! `PrimaryOptions::max_listeners_per_worker` of them (default 64, counting listens waiting for
//! a name lookup); a listen past it fails in that worker (`EINVAL`, the message names the
//! option) and everyone else carries on. A listener whose workers all crashed waits for a
//! replacement for `orphan_listener_grace` (default 60 s, twice the supervisor's longest
//! restart delay) and then closes; a worker listening on it in time keeps it. When binding a
//! new listener fails with `EMFILE`/`ENFILE`, such orphaned listeners close at once (their fds
//! are the cheapest to give back) and the bind is tried again.
//!
//! ## Datagram listeners and the primary's own fds
//! `Worker::bind_datagram` asks for a UDP socket (node:cluster's dgram `bind()` without
//! `exclusive`). A listener's key is its address, index *and kind*: TCP 8080 and UDP 8080 are
//! two listeners. The primary binds a UDP socket once (no `SO_REUSEADDR`, as Node's dgram
//! without `reuseAddr`; port 0 is one kernel port for everyone) and, whatever the policy, hands
//! every asking worker a duplicate: there is nothing to accept, so nothing to round-robin, and
//! the kernel gives each datagram to one of the workers reading. `Event::Listening` carries
//! `BoundAddr::Udp`, so fronts tell it apart (Node's `'udp4'`/`'udp6'`), and the listener counts
//! against `max_listeners_per_worker`. It closes like a stream listener: at once when its last
//! worker leaves gracefully, after `orphan_listener_grace` when the last one crashed. The grace
//! is kept for UDP on purpose: datagrams sent meanwhile wait in the socket's receive buffer for
//! the replacement instead of drawing ICMP port-unreachable, and the replacement gets the same
//! port, also where port 0 was asked (node:cluster closes the socket at once and a `bind(0)`
//! replacement gets another port).
//!
//! `fd:N` (Node's `listen({ fd })`/`bind({ fd })` in a worker) names the *primary's* fd N, such
//! as a socket inherited from systemd socket activation. The primary checks it (`EBADF`,
//! `ENOTSOCK`, `EPROTOTYPE` when it is a stream socket and a datagram listener was asked for or
//! the other way round), works on a duplicate (a stream one gets `listen(2)` with the worker's
//! backlog, as Node does; `EINVAL` if it is connected) and never closes fd N: once the last
//! worker leaves only the duplicate closes, and a Unix socket's file stays where it is. The
//! duplicate shares fd N's open file description, so fd N turns non-blocking.
//!
//! A listen on a host name (not an IP literal) is resolved off the primary's loop, on a
//! short-lived thread per name (at most 8 at once, more wait in line), since the system
//! resolver may block for its whole timeout. The thread wakes the loop, which binds and answers
//! the worker; a worker that left meanwhile is skipped. Workers asking for the same address and
//! index while the lookup runs share it and get the same listener, as node:cluster's key
//! says. One thread per lookup rather than one resident resolver thread: a name that never
//! resolves holds up no other lookup, and no thread stays behind once lookups are over.
//!
//! ## Messages
//! Application messages travel on the worker's channel in order, in frames of up to 64 KiB
//! (bigger messages are split and reassembled; 64 MiB at most). A message is written straight
//! from the caller's bytes when nothing is queued before it; what the socket does not take is
//! queued and written by the loop when there is room, and `Primary::written` tells how far a
//! channel got (Node's send callbacks fire from it). Messages a worker sent before it exited are
//! read before its exit is reported.
//!
//! The queue to one worker is bounded by `PrimaryOptions::send_queue_limit` (16 MiB by default):
//! a send that would pass it fails with `ErrorKind::WouldBlock` and changes nothing, and
//! `Event::Drain` says when the queue is down to half, so a worker that stops reading costs the
//! primary at most the limit. The Node front sets no limit (node:cluster's `send()` only returns
//! false). A worker's own sends wait for room in the socket: the primary always reads.
//!
//! With `PrimaryOptions::message_channels` (the Node front) each worker gets a second channel
//! (`CORRAL_MESSAGE_FD`) for the messages it sends, which the front reads itself
//! (`Primary::take_message_channel`): the Node primary reads it on its JS thread, one thread
//! wake-up per message instead of two. Control traffic stays on the first channel.
//!
//! ## Who owns which fd
//! Every fd is created close-on-exec and held by an `OwnedFd`; a message or event that carries
//! an fd owns it, and dropping it closes the fd. A connection handed to a worker is owned by
//! the worker from the moment it is taken off the channel. The primary also keeps the worker's
//! end of each channel open: if a worker dies (or says goodbye) with connections still queued
//! to it, the primary reads them back and hands them to another worker, so no connection that
//! had not reached a worker is lost.
//!
//! ## Exits and shutdown
//! Exits are watched with pidfds in the primary's poller: no process-wide SIGCHLD handler, which
//! would steal the children of the host program (Node's among them). Workers get
//! `PR_SET_PDEATHSIG(SIGKILL)` and see EOF on their channel when the primary dies, so a
//! SIGKILLed primary leaves no orphans.
//!
//! The portable Unix backend (macOS; Linux with the `portable` feature) has no pidfds: the
//! first worker a primary starts installs a `SIGCHLD` handler, process-wide, that calls the
//! handler it replaced and never reaps a child it was not given. A program that installs its
//! own `SIGCHLD` handler later without chaining (libuv does) takes the exits from it. Workers
//! there have no `PR_SET_PDEATHSIG` either: they leave on their channel's EOF.
//!
//! `disconnect(worker)` stops new connections for that worker at once and asks it to finish and
//! leave; its exit is then flagged `exited_after_disconnect`. `shutdown(timeout)` closes the
//! listeners, disconnects every worker and SIGKILLs what is still running at the deadline;
//! `Event::ShutdownComplete { clean }` tells whether anyone had to be killed.
//!
//! ## Supervision
//! [`crate::supervisor::Supervisor`] drives a primary from the same loop: it feeds on the
//! primary's events and acts on deadlines (`next_deadline`, `tick`). [`crate::Cluster`] is that
//! loop, written once for every front (the C ABI, the Node addon, the tests): one `dispatch`
//! bounded by both deadlines, and `next_event` in one order (the primary's events, each handed
//! to the supervisor as it is taken; then the supervisor's; then `tick` and what it caused).
//! Restarts follow an
//! exponential backoff with jitter that resets after a stable run; too many unstable exits of one
//! slot in a window is a crash loop: that slot retries at the maximum delay only, the others keep
//! serving. A rolling reload starts the new worker, waits until it listens (or says ready),
//! keeps it on probation, then disconnects the old one; the handoff's recovery of queued
//! connections is what makes it lose none. Slots are stable labels: a replacement takes its
//! predecessor's slot, so metrics series survive restarts.
//!
//! ## Fork mode and threads
//! `fork_worker` refuses to run in a process with more than one thread: after `fork` only the
//! calling thread exists and any lock another thread held (the allocator's) stays locked in the
//! child. In the child, the primary's copies of listeners, channels, pidfds and poller are
//! closed and the signal handlers the primary installed are restored; the rest of the memory is
//! the primary's. Use exec mode from threaded programs (the Node front always does).
//! A primary that forked a worker therefore resolves listen host names on its loop (the lookup
//! threads would make `fork_worker` refuse while they run): there a slow resolver stalls the
//! loop for its timeout. Exec mode has no such stall.
