//! `NativePrimary`: the engine's primary on a native poll thread, with JS calls under a lock.

use crate::events::{kind, Batch, Event, Events, Queue};
use crate::messages::Readers;
use crate::{to_napi, Failure, Result};
use corral_core::{
    Cluster, ClusterEvent, Event as CoreEvent, Policy, Poller, Primary, PrimaryOptions, SpawnSpec,
    StdioSpec,
};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

type Tsfn = ThreadsafeFunction<Batch, (), Batch, Status, false, true>;

struct State {
    /// The engine: the primary and, after `supervise`, its supervisor.
    cluster: Cluster,
    /// Workers with messages queued by `send`, and the last such message's sequence number:
    /// a FLUSHED event tells JS once it is written (or the channel closed).
    awaiting: HashMap<u64, u64>,
    /// Message channels of started workers, taken from the engine when their Fork event is
    /// collected (the engine drops a slot's fds with the slot) until the JS thread reads them.
    message_fds: HashMap<u64, OwnedFd>,
}

impl std::ops::Deref for State {
    type Target = Primary;
    fn deref(&self) -> &Primary {
        self.cluster.primary()
    }
}

impl std::ops::DerefMut for State {
    fn deref_mut(&mut self) -> &mut Primary {
        self.cluster.primary_mut()
    }
}

struct Shared {
    state: Mutex<State>,
    waker: Arc<mio::Waker>,
    stop: AtomicBool,
    /// Why the engine thread ended, if it failed (see `fail`).
    failed: Mutex<Option<String>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock, for calls that need a running engine: after a failure they get its reason.
    fn live(&self) -> Result<MutexGuard<'_, State>> {
        if let Some(why) = &*self.failed.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(Failure::new("ERR_CORRAL_ENGINE", why.clone()));
        }
        Ok(self.lock())
    }
}

/// How to start one worker (index.js composes node's argv: execArgv, exec, args).
#[napi(object)]
pub struct SpawnOptions {
    pub program: String,
    pub args: Vec<String>,
    pub env: HashMap<String, String>,
    /// Variables of the primary's environment the worker does not get (`fork({ X: undefined })`).
    pub env_remove: Option<Vec<String>>,
    pub cwd: Option<String>,
    /// The worker's fds 0, 1, 2, 3...: "inherit" | "pipe" | "ignore" (/dev/null) | "close"
    /// (fds 3 and up) | "channel" (the worker's channel, Node's 'ipc') | the number of a
    /// primary's fd to copy there.
    pub stdio: Vec<Either<String, i32>>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

pub(crate) fn spawn_spec(opts: &SpawnOptions) -> Result<SpawnSpec> {
    let stdio = opts
        .stdio
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(match s {
                Either::A(s) => match s.as_str() {
                    "inherit" => StdioSpec::Inherit,
                    "pipe" => StdioSpec::Pipe,
                    "ignore" => StdioSpec::Null,
                    "close" => StdioSpec::Closed,
                    "channel" => StdioSpec::Channel,
                    other => {
                        return Err(Failure::new(
                            "ERR_CORRAL_INVALID_ARGUMENT",
                            format!("stdio[{i}]: unknown setup {other:?}"),
                        ))
                    }
                },
                Either::B(fd) => StdioSpec::Fd(*fd),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SpawnSpec {
        program: opts.program.clone().into(),
        args: opts.args.iter().map(Into::into).collect(),
        env: opts.env.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        env_remove: opts.env_remove.iter().flatten().map(Into::into).collect(),
        cwd: opts.cwd.as_ref().map(Into::into),
        stdio,
        uid: opts.uid,
        gid: opts.gid,
        arg0: None,
        // Node workers have the channel and share the primary's process group.
        ..SpawnSpec::default()
    })
}

/// A started worker.
#[napi(object)]
pub struct Spawned {
    pub id: u32,
    pub pid: i32,
    /// The primary's ends of piped stdio, by the worker's fd number (-1 where not piped);
    /// owned by JS.
    pub stdio: Vec<i32>,
}

/// The primary.
#[napi]
pub struct NativePrimary {
    shared: Arc<Shared>,
    /// The poll thread; shared with the env cleanup hook, which joins it.
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Workers' message channels, read on the JS thread (messages.rs); shared with the env
    /// cleanup hook.
    readers: Rc<Readers>,
}

fn convert(p: &mut Primary, ev: CoreEvent) -> Option<Event> {
    Some(match ev {
        CoreEvent::Signal { .. } => return None,
        // Never emitted here: this primary queues without a limit (send_queue_limit: None).
        CoreEvent::Drain { .. } => return None,
        CoreEvent::Fork { worker, pid } => {
            // Workers the supervisor starts are new to JS: it needs their pid and piped stdio.
            let ends = p.take_all_stdio(worker);
            let piped = ends.iter().map(|e| e.is_some() as u8).collect();
            let fds = ends.into_iter().flatten().collect();
            Event {
                kind: kind::FORK,
                worker: worker as u32,
                pid,
                data: Some(piped),
                fds,
                ..Default::default()
            }
        }
        CoreEvent::Online { worker } => Event {
            kind: kind::ONLINE,
            worker: worker as u32,
            ..Default::default()
        },
        CoreEvent::Listening {
            worker,
            listener,
            addr,
        } => Event {
            kind: kind::LISTENING,
            worker: worker as u32,
            id: listener,
            address: Some(addr.host()),
            port: addr.port() as u32,
            family: addr.address_type(),
            ..Default::default()
        },
        CoreEvent::Message { worker, data, fds } => Event {
            kind: kind::MESSAGE,
            worker: worker as u32,
            data: Some(data),
            fds,
            ..Default::default()
        },
        CoreEvent::Ready { worker } => Event {
            kind: kind::READY,
            worker: worker as u32,
            ..Default::default()
        },
        CoreEvent::Disconnect { worker } => Event {
            kind: kind::DISCONNECT,
            worker: worker as u32,
            ..Default::default()
        },
        CoreEvent::Exit {
            worker,
            pid,
            status,
            exited_after_disconnect,
        } => Event {
            kind: kind::EXIT,
            worker: worker as u32,
            pid,
            code: status.code,
            signal: status.signal,
            flag: exited_after_disconnect,
            ..Default::default()
        },
        CoreEvent::Error { worker, error } => Event {
            kind: kind::ERROR,
            worker: worker.unwrap_or(0) as u32,
            message: Some(error.message().to_string()),
            errno: error.errno(),
            syscall: error.code().map(str::to_string),
            ..Default::default()
        },
        CoreEvent::Warning {
            listener,
            code,
            errno,
            message,
        } => Event {
            kind: kind::WARNING,
            id: listener.unwrap_or(0),
            message: Some(message),
            errno,
            syscall: Some(code.to_string()),
            ..Default::default()
        },
        CoreEvent::ShutdownComplete { clean } => Event {
            kind: kind::SHUTDOWN_COMPLETE,
            flag: clean,
            ..Default::default()
        },
    })
}

/// Takes the cluster's events in the engine's order (corral_core::Cluster::next_event), with
/// FLUSHED first for messages written since the last turn.
fn collect(st: &mut State) -> Vec<Event> {
    let State {
        cluster,
        message_fds,
        awaiting,
    } = st;
    let mut out = Vec::new();
    // Before the events of this dispatch (a channel that closed reports FLUSHED before its
    // DISCONNECT): queued messages that were written, or lost with their channel.
    awaiting.retain(|&worker, &mut seq| {
        let written = cluster.primary().written(worker);
        let done = written.map_or(true, |n| n >= seq);
        if done {
            out.push(Event {
                kind: kind::FLUSHED,
                worker: worker as u32,
                ..Default::default()
            });
        }
        !done
    });
    while let Some(ev) = cluster.next_event() {
        match ev {
            ClusterEvent::Primary(ev) => {
                let p = cluster.primary_mut();
                if let CoreEvent::Fork { worker, .. } = ev {
                    if let Some(fd) = p.take_message_channel(worker) {
                        message_fds.insert(worker, fd);
                    }
                }
                out.extend(convert(p, ev));
            }
            ClusterEvent::Supervisor(ev) => out.push(crate::supervise::convert(ev)),
        }
    }
    out
}

/// One turn of the engine: wait for the poller (or the nearest deadline), dispatch, collect.
/// `None` when asked to stop.
fn step(shared: &Shared, poller: &mut Poller) -> corral_core::Result<Option<Vec<Event>>> {
    let timeout = shared.lock().cluster.next_timeout();
    poller.wait(timeout)?;
    if shared.stop.load(Ordering::Acquire) {
        return Ok(None);
    }
    let mut st = shared.lock();
    st.cluster.dispatch_ready(poller)?;
    let events = collect(&mut st);
    if fault_injected(&events) {
        panic!("fault injected by CORRAL_FAULT=engine-panic");
    }
    Ok(Some(events))
}

/// `CORRAL_FAULT=engine-panic` makes the engine thread panic when it first reports a listening
/// worker: the test of the panic boundary below (no other path is known to panic).
fn fault_injected(events: &[Event]) -> bool {
    static FAULT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAULT.get_or_init(|| std::env::var_os("CORRAL_FAULT").is_some_and(|v| v == "engine-panic"))
        && events.iter().any(|e| e.kind == kind::LISTENING)
}

fn poll_loop(shared: Arc<Shared>, poller: &mut Poller, tsfn: Tsfn) {
    let queue = Arc::new(Queue::default());
    let call = |batch: Vec<Event>| {
        queue.push(batch)
            && tsfn.call(
                Batch(queue.clone()),
                ThreadsafeFunctionCallMode::NonBlocking,
            ) == Status::Closing
    };
    while !shared.stop.load(Ordering::Acquire) {
        let failure = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            step(&shared, poller)
        })) {
            Ok(Ok(Some(batch))) => {
                if call(batch) {
                    return;
                }
                continue;
            }
            Ok(Ok(None)) => return,
            Ok(Err(e)) => format!("the engine failed: {}", e.message()),
            Err(panic) => format!("the engine panicked: {}", crate::panic_message(&*panic)),
        };
        // The engine cannot go on. It must not go silent either: JS gets an 'error', then
        // the exit of every worker (killed, as the engine can no longer hand them
        // connections or notice their exits) and the end of the cluster.
        call(fail(&shared, failure));
        return;
    }
}

/// Ends a cluster whose engine failed: records why (later calls get it as their error),
/// drops the supervisor and the primary (which SIGKILLs and reaps the workers), and returns
/// the events that tell JS so.
fn fail(shared: &Shared, reason: String) -> Vec<Event> {
    let mut out = vec![Event {
        kind: kind::ERROR,
        message: Some(reason.clone()),
        syscall: Some("ERR_CORRAL_ENGINE".into()),
        flag: true, // fatal: not one worker's error
        ..Default::default()
    }];
    let mut st = shared.lock();
    *shared.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    let workers: Vec<(u64, i32)> = st
        .worker_ids()
        .into_iter()
        .filter_map(|id| Some((id, st.worker(id)?.pid)))
        .collect();
    let had_supervisor = st.cluster.take_supervisor().is_some();
    // A cluster with nothing in it replaces the failed one, whose drop kills and reaps.
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let empty = Cluster::new(PrimaryOptions::default())?;
        drop(std::mem::replace(&mut st.cluster, empty));
        Ok::<(), corral_core::Error>(())
    }));
    if !matches!(dropped, Ok(Ok(()))) {
        // No replacement (no fds left?) or its drop panicked too: make sure no worker
        // outlives the engine (the primary reaps them when it is dropped at close).
        for &(_, pid) in &workers {
            // SAFETY: plain kill(2) of a child this engine started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    out.extend(workers.into_iter().map(|(worker, pid)| Event {
        kind: kind::EXIT,
        worker: worker as u32,
        pid,
        signal: Some(libc::SIGKILL),
        ..Default::default()
    }));
    if had_supervisor {
        out.push(Event {
            kind: kind::SHUTDOWN_COMPLETE,
            flag: false,
            ..Default::default()
        });
    }
    out
}

/// `cluster.setupPrimary({ sticky, proxyProtocol })` as lib/primary.js passes it.
#[napi(object)]
pub struct RoutingArgs {
    /// Every connection starts with a PROXY v1/v2 header.
    pub proxy_protocol: Option<bool>,
    /// `"cookie"`, `"query"` or `"header"`, with `key_name`.
    pub key_kind: Option<String>,
    pub key_name: Option<String>,
    pub v4_prefix: Option<u32>,
    pub v6_prefix: Option<u32>,
}

impl RoutingArgs {
    fn options(self) -> Result<corral_core::RoutingOptions> {
        use corral_core::policy::http_key::KeySource;
        let mut o = corral_core::RoutingOptions {
            proxy_protocol: self.proxy_protocol.unwrap_or(false),
            ..Default::default()
        };
        let narrow = |p: u32| u8::try_from(p).unwrap_or(u8::MAX);
        o.address_key = corral_core::policy::sticky::AddressKey::new(
            narrow(self.v4_prefix.unwrap_or(32)),
            narrow(self.v6_prefix.unwrap_or(128)),
        )
        .map_err(to_napi)?;
        o.key = match (self.key_kind.as_deref(), self.key_name) {
            (None, _) => None,
            (Some("cookie"), Some(n)) => Some(KeySource::Cookie(n)),
            (Some("query"), Some(n)) => Some(KeySource::Query(n)),
            (Some("header"), Some(n)) => Some(KeySource::Header(n)),
            (Some(k), _) => {
                return Err(to_napi(corral_core::Error::invalid(format!(
                    "sticky key {k:?}: expected cookie, query or header with a name"
                ))))
            }
        };
        o.validate().map_err(to_napi)?;
        Ok(o)
    }
}

#[napi]
impl NativePrimary {
    /// Starts the engine and its poll thread; `on_events(events[])` receives event batches.
    /// `window`: connections a worker may hold un-taken; `undefined` is the engine's default.
    /// `routing`: the sticky key and prefixes and the PROXY protocol (lib/primary.js checks
    /// their types; the engine their values).
    /// A refused option (the policy, a routing value, a `CORRAL_*` override) throws with
    /// `err.option` naming it.
    #[napi(constructor, catch_unwind)]
    pub fn new(
        env: Env,
        policy: String,
        window: Option<u32>,
        on_events: Function<'_, Batch, ()>,
        routing: Option<RoutingArgs>,
    ) -> Result<Self> {
        let raw = env.raw();
        Self::create(env, policy, window, on_events, routing)
            .map_err(|f| f.throw_naming_option(&Env::from_raw(raw)))
    }

    fn create(
        env: Env,
        policy: String,
        window: Option<u32>,
        on_events: Function<'_, Batch, ()>,
        routing: Option<RoutingArgs>,
    ) -> Result<Self> {
        let policy = Policy::parse(&policy).map_err(to_napi)?;
        let routing = routing.map_or_else(|| Ok(Default::default()), RoutingArgs::options)?;
        // Workers' messages come on channels of their own, read on this thread (messages.rs),
        // unless there is no libuv to poll with or CORRAL_NODE_RECV=thread asks for the
        // engine thread's path (both sides then use their native threads).
        let message_channels = crate::uvpoll::available()
            && !std::env::var_os(crate::worker::ENV_RECV).is_some_and(|v| v == "thread");
        let defaults = PrimaryOptions::default();
        let opts = PrimaryOptions {
            policy,
            window: window.unwrap_or(defaults.window),
            message_channels,
            // node:cluster's send() queues without bound (it only returns false): so does this.
            send_queue_limit: None,
            routing,
            ..defaults
        };
        // CORRAL_* overrides (listener limits, stall timeout...) apply in Primary::new.
        let mut cluster = Cluster::new(opts).map_err(to_napi)?;
        let waker = cluster.primary_mut().waker().map_err(to_napi)?;
        // The engine thread waits on the poller without holding the cluster (JS calls take it
        // meanwhile), in one epoll_wait per wake-up.
        let mut poller = cluster.take_poller().expect("a new cluster has its poller");
        let tsfn: Tsfn = on_events
            .build_threadsafe_function::<Batch>()
            .callee_handled::<false>()
            .weak::<true>()
            .build()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                cluster,
                message_fds: HashMap::new(),
                awaiting: HashMap::new(),
            }),
            waker,
            stop: AtomicBool::new(false),
            failed: Mutex::new(None),
        });
        // Environment teardown (process exit, a worker_thread ending): stop the poll thread
        // and end the cluster, so nothing hangs and no worker is left behind.
        // The hook also joins the thread: it runs before the threadsafe function's own teardown
        // and before finalizers, so the thread's last release of the threadsafe function cannot
        // meet a lock the JS thread holds (on Node 26 a join left to the finalizer deadlocked
        // in napi_release_threadsafe_function, about 1 exit in 20).
        let s3 = shared.clone();
        let readers = Rc::new(Readers::default());
        let r3 = readers.clone();
        let thread = Arc::new(Mutex::new(None::<JoinHandle<()>>));
        let t3 = thread.clone();
        env.add_env_cleanup_hook((s3, r3, t3), |(s, r, t)| {
            r.close_all(true);
            s.stop.store(true, Ordering::Release);
            let _ = s.waker.wake();
            join_poll_thread(&t);
        })?;
        let s2 = shared.clone();
        let handle = std::thread::Builder::new()
            .name("corral-primary".into())
            .spawn(move || poll_loop(s2, &mut poller, tsfn))
            .map_err(|e| Failure::new("ERR_CORRAL_OS", format!("start the primary thread: {e}")))?;
        *thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(NativePrimary {
            shared,
            thread,
            readers,
        })
    }

    /// Starts the supervisor (see index.js `supervise`, which validates and flattens the
    /// options); workers are spawned with `spawn`.
    #[napi(catch_unwind)]
    pub fn supervise(
        &self,
        env: Env,
        options: crate::supervise::JsSupervisorOptions,
        spawn: SpawnOptions,
    ) -> Result<()> {
        let opts = options
            .into_core()
            .map_err(|f| f.throw_naming_option(&env))?;
        let mut st = self.shared.live()?;
        if st.cluster.supervisor().is_some() {
            return Err(Failure::new(
                "ERR_CORRAL_WRONG_STATE",
                "supervise() was already called",
            ));
        }
        let spec = spawn_spec(&spawn)?;
        st.cluster
            .supervise(
                opts,
                Box::new(move |p, _slot| p.spawn_worker_with(&spec, &[])),
            )
            .map_err(to_napi)?;
        drop(st);
        let _ = self.shared.waker.wake();
        Ok(())
    }

    /// Supervisor control: "reload", "shutdown", or "scale" with `n`.
    #[napi(catch_unwind)]
    pub fn supervisor_call(&self, what: String, n: Option<u32>) -> Result<()> {
        let mut st = self.shared.live()?;
        if st.cluster.supervisor().is_none() {
            return Err(Failure::new(
                "ERR_CORRAL_WRONG_STATE",
                "call supervise() first",
            ));
        }
        let n = n.unwrap_or(0) as usize;
        match what.as_str() {
            "reload" => st.cluster.with_supervisor(|s, p| s.reload(p)),
            "shutdown" => st.cluster.with_supervisor(|s, p| s.shutdown(p)),
            "scale" => st.cluster.with_supervisor(|s, p| s.scale(p, n)),
            other => {
                return Err(Failure::new(
                    "ERR_CORRAL_INVALID_ARGUMENT",
                    format!("unknown call {other}"),
                ))
            }
        }
        .map_err(to_napi)?;
        drop(st);
        let _ = self.shared.waker.wake();
        Ok(())
    }

    /// The supervisor's metrics snapshot.
    #[napi(catch_unwind)]
    pub fn supervisor_metrics(&self) -> Result<crate::supervise::JsMetrics> {
        let st = self.shared.lock();
        let s = st
            .cluster
            .supervisor()
            .ok_or_else(|| Failure::new("ERR_CORRAL_WRONG_STATE", "call supervise() first"))?;
        Ok(crate::supervise::JsMetrics::new(
            &s.metrics(st.cluster.primary()),
            s.metrics_addr(),
        ))
    }

    /// The metrics in Prometheus text.
    #[napi(catch_unwind)]
    pub fn supervisor_prometheus(&self) -> Result<String> {
        let st = self.shared.lock();
        let s = st
            .cluster
            .supervisor()
            .ok_or_else(|| Failure::new("ERR_CORRAL_WRONG_STATE", "call supervise() first"))?;
        Ok(s.metrics(st.cluster.primary()).to_prometheus())
    }

    fn wake_if_pending(&self, p: &Primary) {
        if p.next_timeout() == Some(Duration::ZERO) {
            let _ = self.shared.waker.wake();
        }
    }

    /// The policy in effect ("rr", "shared" or "kernel-rr", after `CORRAL_SCHED_POLICY`).
    #[napi(catch_unwind)]
    pub fn policy(&self) -> String {
        self.shared.lock().policy().name().to_string()
    }

    /// Spends the next worker id (a `fork()` that throws before starting a process).
    #[napi(catch_unwind)]
    pub fn skip_worker_id(&self) -> Result<u32> {
        let mut p = self.shared.live()?;
        p.skip_worker_id().map(|id| id as u32).map_err(to_napi)
    }

    /// Starts a worker (exec mode) and returns its id, pid and piped stdio fds.
    #[napi(catch_unwind)]
    pub fn spawn(&self, env: Env, opts: SpawnOptions) -> Result<Spawned> {
        let spec = spawn_spec(&opts)?;
        let mut p = self.shared.live()?;
        let id = p
            .spawn_worker_with(&spec, &[])
            .map_err(|e| to_napi(e).throw_naming_option(&env))?;
        // Taken now rather than with the Fork event: worker.process.channel.fd names it from
        // the moment fork() returns.
        if let Some(fd) = p.take_message_channel(id) {
            p.message_fds.insert(id, fd);
        }
        let pid = p.worker(id).map_or(0, |w| w.pid);
        let stdio = p
            .take_all_stdio(id)
            .into_iter()
            .map(|fd| fd.map_or(-1, |fd| fd.into_raw_fd()))
            .collect();
        self.wake_if_pending(&p);
        Ok(Spawned {
            id: id as u32,
            pid,
            stdio,
        })
    }

    /// Sends a message (and duplicates of `fds`) to a worker. Returns 0 when it was written at
    /// once; otherwise its sequence number `n` (it is out once `written(worker)` reaches `n`,
    /// announced by a FLUSHED event), negated under backpressure (`send` returns false then).
    /// `fds` is left out (undefined) for a message without handles: no array to make and
    /// convert per message.
    #[napi(catch_unwind)]
    pub fn send(&self, worker: u32, data: BufferSlice<'_>, fds: Option<Vec<i32>>) -> Result<f64> {
        let owned = crate::dup_handles(fds.as_deref().unwrap_or_default())?;
        let mut st = self.shared.live()?;
        let sent = st
            .send_tracked(worker as u64, &data, owned)
            .map_err(to_napi)?;
        self.wake_if_pending(&st);
        if !sent.written {
            let awaited = st.awaiting.entry(worker as u64).or_default();
            *awaited = (*awaited).max(sent.seq);
        }
        Ok(crate::sent_to_js(sent))
    }

    /// Sends several messages as one Batch frame (`data`: `[len u32le][bytes]` each; see
    /// `corral_core::Primary::send_batch_tracked`), which the worker reads as those messages in order.
    /// Returns as `send`, for all of them.
    #[napi(catch_unwind)]
    pub fn send_batch(&self, worker: u32, data: BufferSlice<'_>) -> Result<f64> {
        let mut st = self.shared.live()?;
        let sent = st
            .send_batch_tracked(worker as u64, &data)
            .map_err(to_napi)?;
        self.wake_if_pending(&st);
        if !sent.written {
            let awaited = st.awaiting.entry(worker as u64).or_default();
            *awaited = (*awaited).max(sent.seq);
        }
        Ok(crate::sent_to_js(sent))
    }

    /// Messages written to a worker's channel so far (-1 once it is closed).
    #[napi(catch_unwind)]
    pub fn written(&self, worker: u32) -> f64 {
        self.shared
            .lock()
            .written(worker as u64)
            .map_or(-1.0, |n| n as f64)
    }

    /// Sends a signal to a worker's process.
    #[napi(catch_unwind)]
    pub fn kill(&self, worker: u32, signal: i32) -> Result<()> {
        self.shared
            .lock()
            .kill(worker as u64, signal)
            .map_err(to_napi)
    }

    /// Graceful disconnect of one worker (no new connections; it is asked to leave).
    #[napi(catch_unwind)]
    pub fn disconnect(&self, worker: u32) -> Result<()> {
        let mut p = self.shared.live()?;
        let r = p.disconnect(worker as u64).map_err(to_napi);
        self.wake_if_pending(&p);
        r
    }

    /// Cuts a worker's channel at once: its message channel broke, or `worker.process.disconnect()`
    /// (see `Primary::cut_off`).
    #[napi(catch_unwind)]
    pub fn cut_off(&self, worker: u32) -> Result<()> {
        let mut p = self.shared.live()?;
        let r = p.cut_off(worker as u64).map_err(to_napi);
        drop(p);
        let _ = self.shared.waker.wake();
        r
    }

    /// Graceful shutdown of the whole cluster with a deadline.
    #[napi(catch_unwind)]
    pub fn shutdown(&self, timeout_ms: u32) -> Result<()> {
        let mut p = self.shared.live()?;
        p.shutdown(Duration::from_millis(timeout_ms as u64))
            .map_err(to_napi)?;
        let _ = self.shared.waker.wake();
        Ok(())
    }

    /// Starts reading worker `worker`'s messages on this thread, delivered to `on_events` as
    /// MESSAGE events (index.js calls it on the worker's `online`). No-op without message
    /// channels.
    #[napi(catch_unwind)]
    pub fn watch_messages(
        &self,
        env: Env,
        worker: u32,
        on_events: Function<'_, Batch, ()>,
    ) -> Result<()> {
        self.readers
            .watch(&env, worker, || self.take_message_fd(worker), &on_events)
    }

    /// The messages worker `worker` sent that were not delivered yet (index.js calls it before
    /// it handles the worker's `disconnect` or `exit`); `close` also stops reading them.
    #[napi(catch_unwind)]
    pub fn drain_messages(&self, worker: u32, close: bool) -> Events {
        Events(
            self.readers
                .drain(worker, || self.take_message_fd(worker), close),
        )
    }

    /// The primary's end of worker `worker`'s channel for `worker.process.channel.fd` (Node's
    /// is the primary's end of the IPC pipe): the message channel this thread reads, or the
    /// engine's channel when messages come that way (CORRAL_NODE_RECV=thread); -1 once closed.
    #[napi(catch_unwind)]
    pub fn channel_fd(&self, worker: u32) -> i32 {
        if let Some(fd) = self.readers.raw_fd(worker) {
            return fd;
        }
        let state = self.shared.lock();
        if let Some(fd) = state.message_fds.get(&(worker as u64)) {
            return fd.as_raw_fd();
        }
        state.channel_raw_fd(worker as u64).unwrap_or(-1)
    }

    fn take_message_fd(&self, worker: u32) -> Option<OwnedFd> {
        self.shared.lock().message_fds.remove(&(worker as u64))
    }

    /// Stops the poll thread and ends the cluster (remaining workers are killed and reaped).
    #[napi(catch_unwind)]
    pub fn close(&mut self) {
        self.readers.close_all(false);
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.shared.waker.wake();
        join_poll_thread(&self.thread);
    }
}

fn join_poll_thread(thread: &Mutex<Option<JoinHandle<()>>>) {
    let handle = thread.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(t) = handle {
        let _ = t.join();
    }
}

impl Drop for NativePrimary {
    fn drop(&mut self) {
        self.close();
    }
}
