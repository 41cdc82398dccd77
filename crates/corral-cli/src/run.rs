//! `corral run`: the engine's primary and supervisor over workers that know nothing of corral.
//!
//! - Listeners are bound here with the engine's listener code (or taken from systemd), made
//!   blocking (corral never accepts on them; programs expect systemd's blocking sockets) and
//!   given to every worker as fds 3.. (`SpawnSpec::without_channel`: no other fd).
//! - `LISTEN_PID` must be the worker's own pid, known only after fork. Workers are exec'd
//!   through `/bin/sh -c 'export LISTEN_PID=$$; exec "$0" "$@"'`: the shell's pid is the
//!   program's after `exec`. Chosen over writing the pid into a prepared environment between
//!   fork and exec: no new code in the async-signal-safe window and no PATH lookup of our own,
//!   for one extra exec of a small shell per worker start.
//! - The engine asks such a worker to leave (reload, scale down, shutdown) with SIGTERM, the
//!   signal every server takes as "drain and exit" (it cannot read the channel's request).
//! - Readiness: `READY=1` on the worker's `NOTIFY_SOCKET`, or `--ready-delay` alive for a
//!   worker that never sent anything there (or, with `--ready-cmd`, the first success of its
//!   probe command: `probe`), is told to the supervisor
//!   (`Supervisor::worker_ready`), which gates the rolling reload; `WATCHDOG=1` feeds its
//!   hang watchdog (`Supervisor::worker_heartbeat`, `--heartbeat-timeout`).

use crate::args::{RunConfig, RunPolicy};
use crate::connections;
use crate::control;
use crate::notify::{self, NotifyDir};
use crate::probe::{self, Probes};
use crate::systemd::{self, Notifier};
use corral_core::listener::BindOptions;
use corral_core::steering::{self, KernelSteering};
use corral_core::supervisor::SpawnFn;
use corral_core::{
    listener, Event, Policy, Primary, PrimaryOptions, SpawnSpec, StdioSpec, Supervisor,
    SupervisorEvent, WorkerId,
};
use mio::unix::SourceFd;
use mio::{Interest, Token};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PRIMARY: Token = Token(0);
const CONTROL: Token = Token(1);
/// Control connections waiting for their request: `CONTROL_CONN + n`.
const CONTROL_CONN: usize = 1 << 48;
/// Notify sockets: `NOTIFY_BASE + worker id`.
const NOTIFY_BASE: usize = 16;

const SH_WRAPPER: &str = "export LISTEN_PID=$$; exec \"$0\" \"$@\"";
const SH_WRAPPER_WATCHDOG: &str = "export LISTEN_PID=$$ WATCHDOG_PID=$$; exec \"$0\" \"$@\"";

/// A kernel-rr group, shared with the spawn function (which takes each worker's slot).
type Group = Arc<Mutex<KernelSteering>>;

/// One listener handed to the workers.
struct Listener {
    name: String,
    address: String,
    fd: OwnedFd,
    /// A Unix socket file corral created (removed at exit).
    unix_path: Option<PathBuf>,
    /// `kernel-rr`: `fd` is the group's anchor and each worker gets a socket of its own.
    steering: Option<Group>,
    /// Its address as `corral status` matches connections against.
    local: Option<connections::Local>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What corral knows of a worker beyond the engine.
#[derive(Debug)]
struct Worker {
    started: Instant,
    ready: bool,
    /// It sent something on its notify socket: only READY=1 makes it ready then.
    spoke: bool,
    status: Option<String>,
    /// Its key in the kernel-rr groups.
    key: u64,
    /// Its supervisor slot (`CORRAL_WORKER_SLOT`).
    slot: usize,
    /// Its kernel-rr slots were cleared (it was asked to leave, or it exited).
    left_groups: bool,
    notify: Option<(PathBuf, UnixDatagram)>,
}

/// A worker the spawn function started, until the loop adopts it (`Cluster::adopt_spawned`).
struct Spawn {
    id: WorkerId,
    /// Read at spawn: once its exit is handled the engine no longer knows it.
    pid: i32,
    started: Instant,
    /// Its key in the kernel-rr groups.
    key: u64,
    slot: usize,
    notify: (PathBuf, UnixDatagram),
}

/// Workers the spawn function started and the loop has not adopted yet.
type Spawned = Arc<Mutex<Vec<Spawn>>>;

/// Runs the cluster until it has shut down; returns the process exit status.
pub fn run(cfg: RunConfig) -> i32 {
    match Cluster::start(cfg) {
        Ok(mut c) => c.run(),
        Err(e) => {
            say!("corral: {e}");
            1
        }
    }
}

struct Cluster {
    cfg: RunConfig,
    p: Primary,
    sup: Supervisor,
    poll: mio::Poll,
    control: control::Server,
    listeners: Vec<Listener>,
    spawned: Spawned,
    workers: BTreeMap<WorkerId, Worker>,
    manager: Option<Notifier>,
    manager_watchdog: Option<(Duration, Instant)>,
    announced_ready: bool,
    /// Control connections waiting for their request line.
    pending: Vec<(Token, control::Pending)>,
    control_seq: u64,
    /// Notify sockets with datagrams left unread last turn.
    hot_notify: Vec<WorkerId>,
    /// Workers asked for (the supervisor keeps its start-up count in its options).
    wanted: usize,
    was_reloading: bool,
    stopping_sent: bool,
    /// `--ready-cmd` attempts of the workers not yet ready.
    probes: Option<Probes>,
    /// Keeps the notify directory until the workers are gone.
    _notify_dir: Arc<Mutex<NotifyDir>>,
}

/// Looks `program` up as exec would, for a clear error before any worker starts.
fn check_program(program: &OsString) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let p = PathBuf::from(program);
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if p.components().count() > 1 || p.is_absolute() {
        executable(&p)
    } else {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|d| executable(&d.join(&p))))
            .unwrap_or(false)
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "program {}: not found or not executable{}",
            p.display(),
            if p.components().count() > 1 {
                ""
            } else {
                " in PATH"
            }
        ))
    }
}

impl Cluster {
    fn start(cfg: RunConfig) -> Result<Cluster, String> {
        check_program(&cfg.program[0])?;
        let inherited = systemd::take()?;
        // Listeners: systemd's first (in its order), then --listen.
        let mut listeners = Vec::new();
        for (name, fd) in &inherited.listeners {
            let b = listener::bind(&corral_core::ListenAddr::Fd(*fd), cfg.backlog)
                .map_err(|e| format!("LISTEN_FDS fd {fd}: {e}"))?;
            listeners.push(Listener {
                name: name.clone(),
                address: b.addr.to_string(),
                local: connections::Local::of(&b.addr),
                fd: b.fd,
                unix_path: None,
                steering: None,
            });
        }
        for l in &cfg.listen {
            let (b, steering) = bind(&l.addr, cfg.backlog, cfg.policy)?;
            listeners.push(Listener {
                steering,
                name: l.name.clone(),
                address: b.addr.to_string(),
                local: connections::Local::of(&b.addr),
                unix_path: match (&b.addr, b.adopted) {
                    (corral_core::BoundAddr::Unix(p), false) => Some(p.clone()),
                    _ => None,
                },
                fd: b.fd,
            });
        }
        for l in &listeners {
            corral_core::set_nonblocking(l.fd.as_fd(), false)
                .map_err(|e| format!("listener {}: fcntl(O_NONBLOCK): {e}", l.address))?;
            say!("corral: listening on {} ({})", l.address, l.name);
        }
        let control = control::Server::bind(&cfg.target)?;
        let runtime = control::runtime_dir();
        control::ensure_dir(&runtime)
            .map_err(|e| format!("runtime directory {}: {e}", runtime.display()))?;
        let notify_dir = Arc::new(Mutex::new(
            NotifyDir::create(&runtime, &cfg.target.name)
                .map_err(|e| format!("notify directory in {}: {e}", runtime.display()))?,
        ));

        let mut p = Primary::new(PrimaryOptions {
            policy: Policy::Shared,
            shutdown_signals: true,
            reload_signal: true,
            shutdown_timeout: cfg.supervisor.shutdown_timeout,
            stall_timeout: None,
            ..PrimaryOptions::default()
        })
        .map_err(|e| e.to_string())?;

        // kernel-rr: a leaving worker's slot is cleared first (`leave_groups`), its SIGTERM
        // comes `--stop-delay` later. Shared sockets: at once (clearing nothing, it would
        // keep accepting until then).
        if listeners.iter().any(|l| l.steering.is_some()) {
            p.set_stop_delay(cfg.stop_delay)
                .map_err(|e| e.to_string())?;
        }
        let watchdog = cfg.supervisor.heartbeat.as_ref().map(|h| h.timeout);
        let mut args: Vec<OsString> = vec![
            "-c".into(),
            if watchdog.is_some() {
                SH_WRAPPER_WATCHDOG
            } else {
                SH_WRAPPER
            }
            .into(),
        ];
        args.extend(cfg.program.iter().cloned());
        // stdin: a worker in its own process group reading the terminal would be stopped
        // (SIGTTIN); servers read no stdin.
        let stdio = vec![StdioSpec::Null, StdioSpec::Inherit, StdioSpec::Inherit];
        // Per listener: the shared socket's number, or the group a worker joins.
        let per_worker: Vec<(RawFd, Option<Group>)> = listeners
            .iter()
            .map(|l| (l.fd.as_raw_fd(), l.steering.clone()))
            .collect();
        let mut env: Vec<(String, String)> = Vec::new();
        if !listeners.is_empty() {
            env.push(("LISTEN_FDS".into(), listeners.len().to_string()));
            let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
            env.push(("LISTEN_FDNAMES".into(), names.join(":")));
        }
        if let Some(t) = watchdog {
            env.push(("WATCHDOG_USEC".into(), t.as_micros().to_string()));
        }
        let spec = SpawnSpec {
            program: "/bin/sh".into(),
            args,
            stdio,
            without_channel: true,
            // Ctrl-C in a terminal reaches corral only, which drains the workers with SIGTERM.
            process_group: Some(0),
            ..SpawnSpec::default()
        };
        let spawned: Spawned = Arc::new(Mutex::new(Vec::new()));
        let spawn: SpawnFn = {
            let spawned = spawned.clone();
            let notify_dir = notify_dir.clone();
            let mut seq = 0u64;
            Box::new(move |p: &mut Primary, slot: usize| {
                seq += 1;
                let key = seq;
                let mut spec = spec.clone();
                // The worker's own group sockets: corral keeps no copy (dropped below), so
                // its death closes them and the group deals around it.
                let mut members = Vec::new();
                for (fd, steering) in &per_worker {
                    let fd = match steering {
                        None => *fd,
                        Some(ks) => {
                            let member = ks
                                .lock()
                                .expect("steering lock")
                                .join(key)
                                // Round-robin has no load map (that is kernel-least's).
                                .map(|m| m.sock)
                                .and_then(|m| {
                                    corral_core::set_nonblocking(m.as_fd(), false).map(|_| m)
                                })
                                .map_err(|e| {
                                    corral_core::Error::os("bind", "kernel-rr worker socket", &e)
                                });
                            match member {
                                Ok(m) => {
                                    let raw = m.as_raw_fd();
                                    members.push(m);
                                    raw
                                }
                                Err(e) => {
                                    leave_all(&per_worker, key);
                                    return Err(e);
                                }
                            }
                        }
                    };
                    spec.stdio.push(StdioSpec::Fd(fd));
                }
                let (path, sock) = match notify_dir.lock().expect("notify dir lock").socket() {
                    Ok(s) => s,
                    Err(e) => {
                        leave_all(&per_worker, key);
                        return Err(corral_core::Error::os("bind", "worker NOTIFY_SOCKET", &e));
                    }
                };
                let mut env = env.clone();
                env.push(("NOTIFY_SOCKET".into(), path.display().to_string()));
                env.push(("CORRAL_WORKER_SLOT".into(), slot.to_string()));
                let id = match p.spawn_worker_with(&spec, &env) {
                    Ok(id) => id,
                    Err(e) => {
                        leave_all(&per_worker, key);
                        return Err(e);
                    }
                };
                drop(members);
                // Just spawned, no event handled since: the engine knows it.
                let pid = p.worker(id).map_or(0, |i| i.pid);
                spawned.lock().expect("spawned lock").push(Spawn {
                    id,
                    pid,
                    started: Instant::now(),
                    key,
                    slot,
                    notify: (path, sock),
                });
                Ok(id)
            })
        };
        let mut sup =
            Supervisor::start(&mut p, cfg.supervisor.clone(), spawn).map_err(|e| e.to_string())?;
        // Foreign programs pre-fork (uvicorn --workers, gunicorn): a worker's RSS and CPU, for
        // status, metrics and --recycle-max-rss, are its whole process tree's.
        sup.count_descendants(true);
        let locals: Vec<connections::Local> =
            listeners.iter().filter_map(|l| l.local.clone()).collect();
        sup.set_scrape_hook(Box::new(move |workers: &[(u64, i32)]| {
            connections::prometheus(workers, &locals)
        }));
        if let Some(a) = sup.metrics_addr() {
            say!("corral: metrics on http://{a}/metrics");
        }
        let poll = mio::Poll::new().map_err(|e| format!("epoll_create: {e}"))?;
        poll.registry()
            .register(&mut SourceFd(&p.poll_fd()), PRIMARY, Interest::READABLE)
            .map_err(|e| format!("epoll_ctl: {e}"))?;
        poll.registry()
            .register(
                &mut SourceFd(&control.listener.as_raw_fd()),
                CONTROL,
                Interest::READABLE,
            )
            .map_err(|e| format!("epoll_ctl: {e}"))?;
        say!(
            "corral: cluster {} (pid {}), control socket {}",
            cfg.target.name,
            std::process::id(),
            control.path().display()
        );
        if let Some(n) = &inherited.notify {
            n.send(&format!(
                "STATUS=starting {} workers",
                cfg.supervisor.workers
            ));
        }
        let wanted = cfg.supervisor.workers;
        let cfg_probe = cfg.ready_cmd.clone();
        Ok(Cluster {
            manager_watchdog: inherited.watchdog.map(|d| (d, Instant::now())),
            manager: inherited.notify,
            cfg,
            p,
            sup,
            poll,
            control,
            listeners,
            spawned,
            workers: BTreeMap::new(),
            announced_ready: false,
            pending: Vec::new(),
            control_seq: 0,
            hot_notify: Vec::new(),
            wanted,
            was_reloading: false,
            stopping_sent: false,
            probes: cfg_probe.map(Probes::new),
            _notify_dir: notify_dir,
        })
    }

    fn run(&mut self) -> i32 {
        let mut events = mio::Events::with_capacity(64);
        loop {
            if let Err(e) = self.p.dispatch(Some(Duration::ZERO)) {
                say!("corral: {e}");
                return 1;
            }
            while let Some(ev) = self.p.next_event() {
                if let Some(clean) = self.on_event(ev) {
                    return self.finish(clean);
                }
            }
            self.adopt_spawned();
            self.check_ready_delays();
            self.sup.tick(&mut self.p);
            self.adopt_spawned();
            self.leave_groups();
            self.refresh_anchors();
            self.report_supervisor();
            self.talk_to_manager();

            let now = Instant::now();
            let mut timeout = self.p.next_timeout();
            if !self.hot_notify.is_empty() {
                timeout = Some(Duration::ZERO);
            }
            let mut at = |t: Instant| {
                let d = t.saturating_duration_since(now);
                timeout = Some(timeout.map_or(d, |x| x.min(d)));
            };
            if let Some(t) = self.sup.next_deadline() {
                at(t);
            }
            if let Some(t) = self.next_ready_deadline() {
                at(t);
            }
            if let Some((every, last)) = self.manager_watchdog {
                at(last + every);
            }
            for (_, conn) in &self.pending {
                at(conn.deadline);
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    say!("corral: epoll_wait: {e}");
                    return 1;
                }
            }
            for id in std::mem::take(&mut self.hot_notify) {
                self.read_notify(id);
            }
            let tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
            for t in tokens {
                match t {
                    PRIMARY => {} // dispatched at the top of the loop
                    CONTROL => self.serve_control(),
                    Token(n) if n >= CONTROL_CONN => {} // all polled below
                    Token(n) if n >= NOTIFY_BASE => self.read_notify((n - NOTIFY_BASE) as u64),
                    _ => {}
                }
            }
            if !self.pending.is_empty() {
                self.poll_control();
            }
        }
    }

    /// Feeds one engine event to the supervisor; `Some(clean)` when the shutdown completed.
    fn on_event(&mut self, ev: Event) -> Option<bool> {
        // A worker can exit before the turn that started it ends (the first ones, started
        // before the loop; one started by a control request): adopted first, its exit below
        // finds its record and gives its kernel-rr slot back. Else the slot stayed taken by
        // the dead worker, its replacement took the next one, and the anchor, seeing no
        // empty period, was never replaced: the clients queued on it were never served.
        self.adopt_spawned();
        match &ev {
            Event::ShutdownComplete { clean } => return Some(*clean),
            Event::Exit {
                worker,
                pid,
                status,
                ..
            } => {
                let how = match (status.code, status.signal) {
                    (Some(c), _) => format!("exited with code {c}"),
                    (_, Some(s)) => format!("was killed by signal {s}"),
                    _ => "exited".into(),
                };
                say!("corral: worker {worker} (pid {pid}) {how}");
                kill_leftovers(*worker, *pid);
                if let Some(p) = &mut self.probes {
                    p.forget(*worker);
                }
                if let Some(w) = self.workers.remove(worker) {
                    if !w.left_groups {
                        self.leave_slots(w.key);
                    }
                    self.drop_notify(*worker, w);
                }
            }
            Event::Error { worker, error } => {
                say!("corral: worker {worker:?}: {error}");
            }
            _ => {}
        }
        self.sup.handle(&mut self.p, &ev);
        None
    }

    fn leave_slots(&self, key: u64) {
        for l in &self.listeners {
            if let Some(ks) = &l.steering {
                ks.lock().expect("steering lock").leave(key);
            }
        }
    }

    /// kernel-rr: SYNs that arrive while no worker holds a slot (start-up, a restart delay
    /// after every worker died) queue on the anchor, which nothing here accepts. When a slot
    /// fills again the anchor is replaced and the old one closed: the kernel migrates its
    /// queue through the group's program to the workers' sockets.
    fn refresh_anchors(&mut self) {
        for l in &mut self.listeners {
            let Some(ks) = &l.steering else { continue };
            let fresh = ks.lock().expect("steering lock").fresh_anchor();
            match fresh {
                None => {}
                // Dropping the old anchor closes it (corral's only copy: workers get none).
                Some(Ok(fd)) => l.fd = fd,
                Some(Err(e)) => say!(
                    "corral: --listen {}: kernel-rr: new anchor socket: {e} (clients queued \
                     while no worker listened stay unserved)",
                    l.address
                ),
            }
        }
    }

    /// kernel-rr: a worker asked to leave is dealt no new connections from now on; those
    /// already in its socket's queue are its to finish. Its SIGTERM follows `--stop-delay`
    /// later (`Primary::set_stop_delay`), time to read what it already accepted.
    fn leave_groups(&mut self) {
        if self.listeners.iter().all(|l| l.steering.is_none()) {
            return;
        }
        let leaving: Vec<(WorkerId, u64)> = self
            .workers
            .iter()
            .filter(|(id, w)| !w.left_groups && leaving(&self.p, **id))
            .map(|(id, w)| (*id, w.key))
            .collect();
        for (id, key) in leaving {
            self.leave_slots(key);
            if let Some(w) = self.workers.get_mut(&id) {
                w.left_groups = true;
            }
        }
    }

    fn drop_notify(&mut self, id: WorkerId, w: Worker) {
        if let Some((path, sock)) = w.notify {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&sock.as_raw_fd()));
            let _ = std::fs::remove_file(path);
        }
        let _ = id;
    }

    /// Registers the notify sockets of workers the supervisor just started.
    fn adopt_spawned(&mut self) {
        let new: Vec<Spawn> = std::mem::take(&mut *self.spawned.lock().expect("spawned lock"));
        for w in new {
            let (id, (path, sock)) = (w.id, w.notify);
            say!("corral: worker {id} started (pid {})", w.pid);
            if let Err(e) = self.poll.registry().register(
                &mut SourceFd(&sock.as_raw_fd()),
                Token(NOTIFY_BASE + id as usize),
                Interest::READABLE,
            ) {
                say!("corral: worker {id}: watch NOTIFY_SOCKET: {e}");
            }
            self.workers.insert(
                id,
                Worker {
                    started: w.started,
                    ready: false,
                    spoke: false,
                    status: None,
                    key: w.key,
                    slot: w.slot,
                    left_groups: false,
                    notify: Some((path, sock)),
                },
            );
        }
    }

    fn read_notify(&mut self, id: WorkerId) {
        let mut buf = [0u8; 4096];
        let mut ready_now = false;
        let mut heartbeat = false;
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let Some((_, sock)) = &w.notify else { return };
        // At most 64 datagrams a turn, so one chatty worker cannot hold the loop. The poller
        // is edge-triggered: a socket left readable is read again next turn (`hot_notify`).
        let mut drained = false;
        for _ in 0..64 {
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(_) => {
                    drained = true;
                    break;
                }
            };
            let msg = notify::parse(&buf[..n]);
            w.spoke = true;
            if msg.ready && !w.ready {
                w.ready = true;
                ready_now = true;
            }
            heartbeat |= msg.watchdog;
            if let Some(s) = msg.status {
                w.status = Some(s);
            }
        }
        if !drained {
            self.hot_notify.push(id);
        }
        if heartbeat {
            self.sup.worker_heartbeat(id);
        }
        if ready_now {
            self.mark_ready(id, "READY=1");
        }
    }

    fn mark_ready(&mut self, id: WorkerId, why: &str) {
        say!("corral: worker {id} ready ({why})");
        self.sup.worker_ready(&mut self.p, id);
    }

    /// A worker silent on its notify socket is ready after `--ready-delay` alive, unless
    /// `--reload-wait-ready` asks for READY=1 or `--ready-cmd` probes it.
    fn check_ready_delays(&mut self) {
        if self.probes.is_some() {
            return self.run_probes();
        }
        if self.cfg.supervisor.reload.wait_ready {
            return;
        }
        let delay = self.cfg.ready_delay;
        let due: Vec<WorkerId> = self
            .workers
            .iter_mut()
            .filter(|(id, w)| {
                !w.ready && !w.spoke && w.started.elapsed() >= delay && !leaving(&self.p, **id)
            })
            .map(|(id, w)| {
                w.ready = true;
                *id
            })
            .collect();
        for id in due {
            self.mark_ready(id, &format!("alive for {} ms", delay.as_millis()));
        }
    }

    /// `--ready-cmd`: READY=1 or the probe's first success, whichever comes first. A worker
    /// asked to leave is no longer probed.
    fn run_probes(&mut self) {
        let Some(probes) = &mut self.probes else {
            return;
        };
        let now = Instant::now();
        let mut ready = Vec::new();
        for (&id, w) in self.workers.iter_mut() {
            if w.ready || leaving(&self.p, id) {
                probes.forget(id);
                continue;
            }
            let pid = self.p.worker(id).map_or(0, |i| i.pid);
            let t = probe::Target {
                id,
                pid,
                slot: w.slot,
            };
            if let probe::Outcome::Ready(n) = probes.poll(t, now) {
                w.ready = true;
                ready.push((id, n));
            }
        }
        for (id, n) in ready {
            self.mark_ready(id, &format!("--ready-cmd exited 0, attempt {n}"));
        }
    }

    fn next_ready_deadline(&self) -> Option<Instant> {
        if let Some(p) = &self.probes {
            return p.next_deadline(Instant::now());
        }
        if self.cfg.supervisor.reload.wait_ready {
            return None;
        }
        self.workers
            .values()
            .filter(|w| !w.ready && !w.spoke)
            .map(|w| w.started + self.cfg.ready_delay)
            .min()
    }

    fn report_supervisor(&mut self) {
        while let Some(ev) = self.sup.next_event() {
            match ev {
                SupervisorEvent::Restart {
                    slot,
                    worker,
                    previous,
                    cause,
                    delay,
                } => say!(
                    "corral: slot {slot}: worker {worker} replaces {} ({}) after {} ms",
                    previous.map_or("nothing".into(), |p| p.to_string()),
                    cause.label(),
                    delay.as_millis()
                ),
                SupervisorEvent::CrashLoop { slot, exits } => say!(
                    "corral: slot {slot} is crash-looping ({} quick exits): retrying at \
                     restart.maxDelay",
                    exits.len()
                ),
                SupervisorEvent::NoRestart { slot, worker, .. } => say!(
                    "corral: slot {slot}: worker {worker} exited with a no-restart code; \
                     the slot stays empty"
                ),
                SupervisorEvent::Hang { slot, worker, .. } => {
                    say!("corral: slot {slot}: worker {worker} hung")
                }
                SupervisorEvent::Recycle {
                    slot,
                    worker,
                    reason,
                } => say!("corral: slot {slot}: recycling worker {worker}: {reason}"),
                SupervisorEvent::Reload(r) => {
                    if r.ok {
                        say!(
                            "corral: reload done: {} workers replaced in {} ms",
                            r.replaced,
                            r.duration.as_millis()
                        );
                    } else {
                        say!(
                            "corral: reload stopped after {} workers: {}",
                            r.replaced,
                            r.reason.as_deref().unwrap_or("?")
                        );
                    }
                }
                SupervisorEvent::Scaled { from, to } => {
                    say!("corral: scaled from {from} to {to} workers")
                }
            }
        }
    }

    fn ready_count(&self) -> usize {
        self.sup.ready_workers(&self.p)
    }

    /// sd_notify to systemd when corral runs as a service.
    fn talk_to_manager(&mut self) {
        let Some(m) = &self.manager else { return };
        if let Some((every, last)) = &mut self.manager_watchdog {
            if last.elapsed() >= *every {
                m.send("WATCHDOG=1");
                *last = Instant::now();
            }
        }
        if self.p.is_shutting_down() {
            if !self.stopping_sent {
                self.stopping_sent = true;
                m.send("STOPPING=1\nSTATUS=draining");
            }
            return;
        }
        let reloading = self.sup.reloading();
        if reloading && !self.was_reloading {
            m.send(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
                systemd::monotonic_usec()
            ));
        }
        let ready = self.ready_count();
        let wanted = self.wanted;
        if !self.announced_ready && ready >= wanted {
            self.announced_ready = true;
            m.send(&format!("READY=1\nSTATUS={ready} workers ready"));
        } else if self.was_reloading && !reloading {
            m.send(&format!("READY=1\nSTATUS={ready} workers ready"));
        }
        self.was_reloading = reloading;
    }

    fn serve_control(&mut self) {
        for conn in self.control.accept_waiting() {
            self.control_seq += 1;
            let token = Token(CONTROL_CONN + self.control_seq as usize);
            if let Err(e) = self.poll.registry().register(
                &mut SourceFd(&conn.stream.as_raw_fd()),
                token,
                Interest::READABLE,
            ) {
                say!("corral: control connection: epoll_ctl: {e}");
                continue;
            }
            self.pending.push((token, conn));
        }
        self.poll_control();
    }

    /// Answers the control connections whose request line has arrived (or is overdue).
    fn poll_control(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.pending.len() {
            let reply = match self.pending[i].1.poll(now) {
                control::Request::Incomplete => {
                    i += 1;
                    continue;
                }
                control::Request::Ready(req) => self.control_request(req),
                control::Request::Refuse(error) => json!({"ok": false, "error": error}),
            };
            let (_, conn) = self.pending.swap_remove(i);
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&conn.stream.as_raw_fd()));
            conn.reply(&reply);
        }
    }

    fn control_request(&mut self, req: Value) -> Value {
        let cmd = req["cmd"].as_str().unwrap_or("");
        let r = match cmd {
            "status" => return self.status(),
            "reload" => self
                .sup
                .reload(&mut self.p)
                .map(|_| "reload started".to_string()),
            "scale" => match req["workers"].as_u64() {
                Some(n) => self.sup.scale(&mut self.p, n as usize).map(|_| {
                    self.wanted = n as usize;
                    format!("scaling to {n} workers")
                }),
                None => Err(corral_core::Error::invalid(
                    "scale: workers must be a number",
                )),
            },
            "stop" => self
                .sup
                .shutdown(&mut self.p)
                .map(|_| "shutting down".to_string()),
            other => Err(corral_core::Error::invalid(format!(
                "unknown command {other:?} (status, reload, scale, stop)"
            ))),
        };
        match r {
            Ok(message) => json!({"ok": true, "message": message}),
            Err(e) => json!({"ok": false, "error": format!("{cmd}: {e}")}),
        }
    }

    fn status(&self) -> Value {
        let m = self.sup.metrics(&self.p);
        let locals: Vec<connections::Local> = self
            .listeners
            .iter()
            .filter_map(|l| l.local.clone())
            .collect();
        let pids: Vec<i32> = m.workers.iter().map(|w| w.pid).collect();
        let conns = connections::count(&pids, &locals);
        let workers: Vec<Value> = m
            .workers
            .iter()
            .zip(conns)
            .map(|(w, conns)| {
                let mine = self.workers.get(&w.id);
                json!({
                    "slot": w.slot,
                    "id": w.id,
                    "pid": w.pid,
                    "state": w.state,
                    "ready": mine.is_some_and(|x| x.ready),
                    "status": mine.and_then(|x| x.status.clone()),
                    "uptime_seconds": w.uptime_seconds,
                    "restarts": w.restarts,
                    "last_restart_cause": w.last_restart_cause,
                    "rss_bytes": w.rss_bytes,
                    "cpu_seconds": w.cpu_seconds,
                    "connections": conns,
                })
            })
            .collect();
        let listeners: Vec<Value> = self
            .listeners
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "address": l.address,
                    "policy": if l.steering.is_some() { "kernel-rr" } else { "shared" },
                })
            })
            .collect();
        json!({
            "ok": true,
            "name": self.cfg.target.name,
            "pid": std::process::id(),
            "wanted": self.wanted,
            "policy": match self.cfg.policy {
                RunPolicy::Shared => "shared",
                RunPolicy::KernelRr => "kernel-rr",
            },
            "reloading": self.sup.reloading(),
            "shutting_down": self.p.is_shutting_down(),
            "reloads": m.reloads,
            "restarts_by_cause": m.restarts_by_cause.iter().cloned().collect::<BTreeMap<_, _>>(),
            "crash_looping_slots": m.crash_looping_slots,
            "listeners": listeners,
            "workers": workers,
        })
    }

    fn finish(&mut self, clean: bool) -> i32 {
        if clean {
            say!("corral: every worker drained and exited: clean shutdown");
            0
        } else {
            say!(
                "corral: workers were still running at the shutdown deadline ({} ms) and were \
                 killed",
                self.cfg.supervisor.shutdown_timeout.as_millis()
            );
            1
        }
    }
}

/// Binds one `--listen`. `kernel-rr` on a TCP address with eBPF available: the group's
/// anchor (it holds the port; workers get sockets of their own); otherwise a shared socket,
/// with the reason printed when kernel-rr was asked.
fn bind(
    addr: &corral_core::ListenAddr,
    backlog: i32,
    policy: RunPolicy,
) -> Result<(listener::Bound, Option<Group>), String> {
    let shared = || {
        listener::bind(addr, backlog)
            .map(|b| (b, None))
            .map_err(|e| format!("--listen {addr}: {e}"))
    };
    if policy != RunPolicy::KernelRr {
        return shared();
    }
    let group = match steering::applies_to(addr).and_then(|_| steering::prepare()) {
        Ok(g) => g,
        Err(f) => {
            say!(
                "corral: --listen {addr}: kernel-rr unavailable, shared instead: {}",
                f.reason
            );
            return shared();
        }
    };
    let anchor = listener::bind_group_anchor(addr, None, backlog, BindOptions::default())
        .map_err(|e| format!("--listen {addr}: {e}"))?;
    match KernelSteering::attach(group, anchor.fd.as_fd(), &anchor.addr, backlog) {
        Ok(ks) => Ok((anchor, Some(Arc::new(Mutex::new(ks))))),
        Err(f) => {
            // The anchor is a listening socket of its own: it serves as the shared one.
            say!(
                "corral: --listen {addr}: kernel-rr unavailable, shared instead: {}",
                f.reason
            );
            Ok((anchor, None))
        }
    }
}

/// Gives back the group slots `key` took (a spawn that failed half way).
fn leave_all(per_worker: &[(RawFd, Option<Group>)], key: u64) {
    for (_, ks) in per_worker {
        if let Some(ks) = ks {
            ks.lock().expect("steering lock").leave(key);
        }
    }
}

/// A worker leads its own process group (`process_group: Some(0)`), which what it forks
/// inherits. Once it has exited, what is left in the group is orphaned: a pre-forking server
/// whose master died (uvicorn `--workers`' children keep accepting on the inherited sockets,
/// unseen by corral, next to the replacement). It is killed, as systemd's
/// `KillMode=control-group` does when a service's main process is gone. A server that
/// drained shut down its children first, so the group is empty then (ESRCH). The group id
/// cannot be another group's while a member lives (its number stays taken); with none left
/// the call finds nothing, unless in the instant since the reap the pid wrapped around and a
/// new process made itself a group leader under that number.
fn kill_leftovers(worker: WorkerId, pid: i32) {
    if pid <= 1 {
        return;
    }
    if killpg(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
        say!("corral: worker {worker} (pid {pid}) left processes in its group behind: killed them");
    }
}

/// The engine asked it to leave (its SIGTERM is sent, or due after `--stop-delay`).
fn leaving(p: &Primary, id: WorkerId) -> bool {
    p.worker(id).is_some_and(|i| i.exited_after_disconnect)
}
