//! Options of a primary: [`PrimaryOptions`], its defaults and limits, and the range checks
//! (`validate`, [`check_send_queue_limit`]) every front goes through, so a bad value is
//! refused with an error naming the option before anything starts.

use crate::error::{Error, Result};
use crate::policy::http_key::KeySource;
use crate::policy::sticky::AddressKey;
use crate::policy::Policy;
use crate::sys::SpawnSpec;
use std::time::Duration;

/// Default window of connections handed to a worker and not yet acknowledged (`rr`, `least`,
/// `sticky`: sent on its channel and not read off it; the kernel policies: queued at its socket
/// and not accepted). 64, not 32: at 9k connections a second per worker, a worker kept off the
/// CPU for one scheduler slice reaches 32 and is passed over, so the turns were no longer
/// exact (max/min per worker 1.003 to 1.13 under `kernel-rr` and `rr`, Node, 2 workers,
/// `Connection: close`); with 64 they were 1.0000 to 1.0007, at the same throughput within
/// the noise. What a blocked worker holds is taken back after the stall time either way.
pub const DEFAULT_WINDOW: u32 = 64;

/// Default deadline of a graceful shutdown.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Default of [`PrimaryOptions::stall_timeout`] (the timeout of `sticky`; the other policies
/// use at most 25 ms).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_millis(250);

/// The stall check's timeout under every policy but `sticky`, at most: a worker that has read
/// nothing of its channel for this long is busy (its loop blocked on a slow request, a long GC
/// pause), and the dealer does not leave new clients waiting there: what it has not read goes
/// to the others, as for any stalled worker. node:cluster's `rr` leaves at most one connection
/// at a busy worker (it hands the next only once the last is acknowledged); corral's window
/// lets a blocked worker collect its share of every new connection until the check sees it.
/// `sticky` keeps the configured timeout: there a connection dealt again moves its client's
/// session. Measured with a worker blocked 600 ms (bindings/node/test/routing/least-stall.js):
/// under `least` 1-2 of 8 clients waited 222-315 ms for it with 250 ms, none with 20 ms; under
/// `rr` (bench skew row, a worker blocked 200 ms on 1 request in 600) p99 was 156 ms with
/// 250 ms against node:cluster's 12.
pub const BALANCING_STALL_TIMEOUT: Duration = Duration::from_millis(25);

/// Default of `PrimaryOptions::send_queue_limit`: 16 MiB per worker.
pub const DEFAULT_SEND_QUEUE_LIMIT: usize = 16 << 20;

/// Smallest `send_queue_limit`: one datagram (64 KiB).
pub const SEND_QUEUE_LIMIT_MIN: usize = crate::ipc::frame::MAX_DATAGRAM;

/// Largest `send_queue_limit`: 1 GiB.
pub const SEND_QUEUE_LIMIT_MAX: usize = 1 << 30;

/// What a queued message costs against `send_queue_limit` besides its bytes (its queue entry
/// and allocation), so that many tiny or empty messages are bounded too.
pub const QUEUED_MESSAGE_COST: usize = 128;

/// Default of [`PrimaryOptions::max_listeners_per_worker`].
pub const DEFAULT_MAX_LISTENERS_PER_WORKER: u32 = 64;

/// Default of [`PrimaryOptions::orphan_listener_grace`]: twice the supervisor's longest
/// restart delay by default (30 s), so a replacement started by the supervisor joins before
/// the listener closes even after a few restarts at that delay.
pub const DEFAULT_ORPHAN_LISTENER_GRACE: Duration = Duration::from_secs(60);

/// Longest [`PrimaryOptions::orphan_listener_grace`] accepted.
pub const MAX_ORPHAN_LISTENER_GRACE: Duration = Duration::from_secs(86_400);

/// Default of [`RoutingOptions::peek_bytes`]: 4 KiB.
pub const DEFAULT_PEEK_BYTES: usize = 4096;

/// Largest [`RoutingOptions::peek_bytes`]: 8 KiB.
pub const MAX_PEEK_BYTES: usize = 8192;

/// Default of [`RoutingOptions::peek_timeout`]: 2 s.
pub const DEFAULT_PEEK_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest [`RoutingOptions::peek_timeout`]: 60 s.
pub const MAX_PEEK_TIMEOUT: Duration = Duration::from_secs(60);

/// How the dealing policies see a connection before dealing it: the sticky key and the PROXY
/// protocol. They apply to every stream listener of the primary (one setting per cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingOptions {
    /// `sticky`: which part of the client address is its key (default: the whole address).
    pub address_key: AddressKey,
    /// `sticky`: route by this cookie, query parameter or header of the client's first
    /// request, peeked at (nothing consumed), falling back to the address when it is absent,
    /// the request is not HTTP/1.x, or the peek bounds are reached.
    pub key: Option<KeySource>,
    /// Every connection starts with a PROXY protocol header (v1 or v2), from a proxy in front
    /// (HAProxy `send-proxy`, nginx `proxy_protocol on`): the primary reads it (exactly its
    /// bytes), routes on the client address it names, and hands that address to the worker
    /// with the connection. A missing, malformed or slow header closes the connection and is
    /// counted ([`RoutingStats::proxy_errors`](crate::RoutingStats::proxy_errors)). Applies under
    /// every dealing policy (not `shared`, where workers accept by themselves).
    pub proxy_protocol: bool,
    /// Most bytes peeked at for the PROXY header and the key: 64 to [`MAX_PEEK_BYTES`],
    /// default [`DEFAULT_PEEK_BYTES`].
    pub peek_bytes: usize,
    /// Longest a connection waits in the primary for its PROXY header and key: 1 ms to
    /// [`MAX_PEEK_TIMEOUT`], default [`DEFAULT_PEEK_TIMEOUT`]. On Linux a peeking primary's
    /// TCP listeners accept a connection only once its first bytes came (`TCP_DEFER_ACCEPT`):
    /// a client that sends nothing is accepted about a second later, and the wait starts then.
    pub peek_timeout: Duration,
}

impl Default for RoutingOptions {
    fn default() -> Self {
        RoutingOptions {
            address_key: AddressKey::default(),
            key: None,
            proxy_protocol: false,
            peek_bytes: DEFAULT_PEEK_BYTES,
            peek_timeout: DEFAULT_PEEK_TIMEOUT,
        }
    }
}

impl RoutingOptions {
    /// Checks the bounds and the key's name.
    pub fn validate(&self) -> Result<()> {
        if !(64..=MAX_PEEK_BYTES).contains(&self.peek_bytes) {
            return Err(Error::invalid_option(
                "routing.peek_bytes",
                format_args!(
                    "must be between 64 and {MAX_PEEK_BYTES} (got {})",
                    self.peek_bytes
                ),
            ));
        }
        if self.peek_timeout < Duration::from_millis(1) || self.peek_timeout > MAX_PEEK_TIMEOUT {
            return Err(Error::invalid_option(
                "routing.peek_timeout",
                format_args!(
                    "must be between 1 ms and {} ms (got {} ms)",
                    MAX_PEEK_TIMEOUT.as_millis(),
                    self.peek_timeout.as_millis()
                ),
            ));
        }
        if let Some(k) = &self.key {
            k.validate()?;
        }
        Ok(())
    }
}

/// Options of a primary. Fixed once the primary is created.
#[derive(Debug, Clone)]
pub struct PrimaryOptions {
    /// Scheduling policy. `CORRAL_SCHED_POLICY` in the environment overrides it.
    pub policy: Policy,
    /// Connections a worker may have in flight (sent, not yet acknowledged). At least 1.
    pub window: u32,
    /// The program workers run in exec mode; `None` allows fork mode only.
    pub exec: Option<SpawnSpec>,
    /// Handle SIGINT and SIGTERM: the first starts a graceful shutdown, a second one SIGKILLs
    /// what is left. This installs process-wide signal handlers (restored on drop).
    pub shutdown_signals: bool,
    /// Handle SIGHUP: reported as `Event::Signal`, which a supervisor turns into a rolling
    /// reload. Installs a process-wide handler (restored on drop).
    pub reload_signal: bool,
    /// Deadline of a shutdown started by a signal.
    pub shutdown_timeout: Duration,
    /// Give every exec'd worker a second channel for its application messages to the primary
    /// (`ENV_MESSAGE_FD`), which the front reads itself ([`Primary::take_message_channel`](super::Primary::take_message_channel))
    /// instead of the engine's loop. The Node front reads it on the JS thread: one thread
    /// wake-up per message instead of two. Control traffic stays on the worker channel.
    pub message_channels: bool,
    /// Round-robin: a worker that has connections waiting unread in its channel and neither
    /// reads nor acknowledges any for this long is *stalled* (stopped, or its loop blocked):
    /// it is dealt no more connections, the ones still unread in its channel are taken back
    /// and dealt to the others, and it rejoins the rotation once it reads again. `None`
    /// turns the check off. Range: 10 ms to 7 days. Under every policy but `sticky` the check
    /// uses at most 25 ms ([`BALANCING_STALL_TIMEOUT`]):
    /// a worker that reads nothing for that long is busy, and its unread connections go to the
    /// others; under `sticky` a connection dealt again moves its client's session, so the
    /// configured timeout holds there. Under `kernel-rr` the eBPF program skips a worker that
    /// holds connections and took none for that long (25 ms at most), until it takes one,
    /// and the primary takes back what its socket holds (from its own copy) and deals it to
    /// the others. See `guide` (stalled workers).
    pub stall_timeout: Option<Duration>,
    /// Listeners one worker may be a member of at once, counting its listens that wait for a
    /// host name lookup; 1 to 65536, default [`DEFAULT_MAX_LISTENERS_PER_WORKER`]. Each
    /// listener costs the primary an fd: past this a listen gets an error (EINVAL, naming this
    /// option) and the primary carries on, so one worker cannot use up the primary's fds.
    pub max_listeners_per_worker: u32,
    /// How long a listener stays open with no worker after its last one crashed (or never
    /// joined): clients wait in its backlog for a replacement meanwhile. A worker joining in
    /// time keeps it; otherwise it closes. At most [`MAX_ORPHAN_LISTENER_GRACE`], default
    /// [`DEFAULT_ORPHAN_LISTENER_GRACE`]. When binding a new listener fails with EMFILE or
    /// ENFILE, such listeners close at once and the bind is tried again.
    pub orphan_listener_grace: Duration,
    /// Bytes of application messages ([`Primary::send`](super::Primary::send)) that may wait in one worker's queue
    /// while its socket is full (a worker that does not read), each message counting its length
    /// plus [`QUEUED_MESSAGE_COST`] (128) bytes. A send that would go past it is
    /// refused with `ErrorKind::WouldBlock`: nothing is queued (its fds are closed), nothing
    /// else changes, and `Event::Drain` follows once the queue is down to half the limit. A
    /// message is always taken when the queue is empty, so one message of up to 64 MiB can
    /// always go. Range [`SEND_QUEUE_LIMIT_MIN`] to [`SEND_QUEUE_LIMIT_MAX`] (checked by
    /// [`check_send_queue_limit`]); default [`DEFAULT_SEND_QUEUE_LIMIT`] (16 MiB). `None`: no
    /// limit, as node:cluster (the Node front).
    pub send_queue_limit: Option<usize>,
    /// The sticky key, the PROXY protocol and the peek bounds ([`RoutingOptions`]).
    pub routing: RoutingOptions,
}

impl PrimaryOptions {
    /// Checks every value against its documented range ([`crate::limits`]): `window`
    /// 1..=65536, `shutdown_timeout` 0..=7 days, `stall_timeout` 10 ms..=7 days,
    /// `max_listeners_per_worker` 1..=65536, `orphan_listener_grace` 0..=1 day.
    pub fn validate(&self) -> Result<()> {
        use crate::limits::{check_count, check_duration, MAX_WINDOW};
        check_count("window", self.window as u64, 1, MAX_WINDOW as u64)?;
        check_duration("shutdown_timeout", self.shutdown_timeout, false)?;
        if let Some(t) = self.stall_timeout {
            check_stall_timeout("stall_timeout", t)?;
        }
        check_count(
            "max_listeners_per_worker",
            self.max_listeners_per_worker as u64,
            1,
            65_536,
        )?;
        check_orphan_listener_grace("orphan_listener_grace", self.orphan_listener_grace)?;
        if let Some(limit) = self.send_queue_limit {
            check_send_queue_limit(limit)?;
        }
        self.routing.validate()
    }
}

/// The one place `PrimaryOptions::send_queue_limit` is range-checked.
pub fn check_send_queue_limit(bytes: usize) -> Result<()> {
    if !(SEND_QUEUE_LIMIT_MIN..=SEND_QUEUE_LIMIT_MAX).contains(&bytes) {
        return Err(Error::invalid_option(
            "send_queue_limit",
            format_args!(
                "send queue limit of {bytes} bytes is out of range: {SEND_QUEUE_LIMIT_MIN} \
                 (64 KiB) to {SEND_QUEUE_LIMIT_MAX} (1 GiB)"
            ),
        ));
    }
    Ok(())
}

/// `PrimaryOptions::stall_timeout` (when on): 10 ms to 7 days. `name`: the option as the
/// caller set it (the field, or the variable that overrides it).
pub(crate) fn check_stall_timeout(name: &str, t: Duration) -> Result<()> {
    crate::limits::check_duration(name, t, true)?;
    if t < Duration::from_millis(10) {
        return Err(Error::invalid_option(
            name,
            format_args!(
                "must be between 10 ms and 7 days (got {} ms)",
                t.as_millis()
            ),
        ));
    }
    Ok(())
}

/// `PrimaryOptions::orphan_listener_grace`: at most [`MAX_ORPHAN_LISTENER_GRACE`]. `name` as
/// in [`check_stall_timeout`].
pub(crate) fn check_orphan_listener_grace(name: &str, grace: Duration) -> Result<()> {
    if grace > MAX_ORPHAN_LISTENER_GRACE {
        return Err(Error::invalid_option(
            name,
            format_args!(
                "must be at most {} ms (1 day) (got {} ms)",
                MAX_ORPHAN_LISTENER_GRACE.as_millis(),
                grace.as_millis()
            ),
        ));
    }
    Ok(())
}

impl Default for PrimaryOptions {
    fn default() -> Self {
        PrimaryOptions {
            policy: Policy::RoundRobin,
            window: DEFAULT_WINDOW,
            exec: None,
            shutdown_signals: false,
            reload_signal: false,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            message_channels: false,
            stall_timeout: Some(DEFAULT_STALL_TIMEOUT),
            max_listeners_per_worker: DEFAULT_MAX_LISTENERS_PER_WORKER,
            orphan_listener_grace: DEFAULT_ORPHAN_LISTENER_GRACE,
            send_queue_limit: Some(DEFAULT_SEND_QUEUE_LIMIT),
            routing: RoutingOptions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::{BindOptions, ListenAddr};

    /// Every refused primary or listen option says which one (`Error::option`), so the fronts
    /// can tell it without reading the text (Node's `err.option`), and the text starts with it
    /// (the C front's last-error message).
    #[test]
    fn refused_primary_and_listen_options_name_the_option() {
        let with = |f: fn(&mut PrimaryOptions)| {
            let mut o = PrimaryOptions::default();
            f(&mut o);
            o.validate().unwrap_err()
        };
        let cases: Vec<(Error, &str)> = vec![
            (with(|o| o.window = 0), "window"),
            (
                with(|o| o.stall_timeout = Some(Duration::from_millis(5))),
                "stall_timeout",
            ),
            (
                with(|o| o.orphan_listener_grace = Duration::from_secs(2 * 86_400)),
                "orphan_listener_grace",
            ),
            (with(|o| o.send_queue_limit = Some(1)), "send_queue_limit"),
            (with(|o| o.routing.peek_bytes = 1), "routing.peek_bytes"),
            (
                with(|o| o.routing.peek_timeout = Duration::ZERO),
                "routing.peek_timeout",
            ),
            (
                with(|o| o.routing.key = Some(KeySource::Cookie("a b".into()))),
                "routing.key",
            ),
            (AddressKey::new(33, 128).unwrap_err(), "routing.address_key"),
            (Policy::parse("bogus").unwrap_err(), "policy"),
            (BindOptions::from_bits(1 << 20).unwrap_err(), "options"),
            ("unix:".parse::<ListenAddr>().unwrap_err(), "address"),
            (
                crate::listener::bind_resolved(
                    &"127.0.0.1:0".parse().unwrap(),
                    "127.0.0.1:0".parse().unwrap(),
                    crate::listener::SocketKind::Stream,
                    -1,
                    BindOptions::default(),
                )
                .unwrap_err(),
                "backlog",
            ),
        ];
        for (e, option) in cases {
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{e}");
            assert_eq!(e.option(), Some(option), "{e}");
            assert!(e.message().starts_with(&format!("{option}: ")), "{e}");
            assert!(
                !e.reason().is_empty() && !e.reason().starts_with(option),
                "{e}"
            );
        }
    }
}
