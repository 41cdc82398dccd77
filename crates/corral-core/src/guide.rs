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
//! connections in flight (sent, not yet taken off its channel; default 32). A worker whose
//! window is full, or whose channel is backed up, is skipped; when every worker is full the
//! primary stops accepting and the kernel backlog holds new clients: real backpressure instead
//! of node:cluster's unbounded queue in the primary. Workers acknowledge connections in groups
//! of a quarter of the window (told in the listen answer), so the primary is not woken once
//! per connection twice. After a crash, clients wait in the backlog and the listener stays open
//! for the replacement; when the last worker of a listener leaves *gracefully* (disconnect,
//! shutdown, scale-down) the listener closes, as node:cluster's does, and new clients are
//! refused instead of queued for nobody.
//!
//! *Shared* (`shared`, node:cluster's `SCHED_NONE`): the primary binds once and gives each
//! worker a duplicate of the listening fd; workers accept by themselves and the kernel picks
//! who wins. Cheapest for the primary, least even.
//!
//! `CORRAL_SCHED_POLICY=rr|shared` overrides the policy of a whole cluster.
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
//! `disconnect(worker)` stops new connections for that worker at once and asks it to finish and
//! leave; its exit is then flagged `exited_after_disconnect`. `shutdown(timeout)` closes the
//! listeners, disconnects every worker and SIGKILLs what is still running at the deadline;
//! `Event::ShutdownComplete { clean }` tells whether anyone had to be killed.
//!
//! ## Supervision
//! [`crate::supervisor::Supervisor`] drives a primary from the same loop: it feeds on the
//! primary's events and acts on deadlines (`next_deadline`, `tick`). Restarts follow an
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
