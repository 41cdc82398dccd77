//! The command line and the config file. Flags win over `--config`; both fill one
//! [`RunConfig`], checked by the engine's own `SupervisorOptions::validate` (so the names and
//! ranges are those of `supervise()` in C and Node).

use crate::probe::ReadyCmd;
use clap::{Args, Parser, Subcommand};
use corral_core::supervisor::{HeartbeatOptions, RecycleOptions, ReloadOptions, RestartOptions};
use corral_core::{ListenAddr, SupervisorOptions};
use serde::Deserialize;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  corral run --workers auto --listen 127.0.0.1:8000 -- uvicorn app:app --fd 3
  corral run --listen :8080 --listen unix:/run/app.sock -- ./server
  corral run --config corral.toml
  corral run --listen :8000 --ready-cmd \\
      'curl -sf --unix-socket /run/app/$CORRAL_WORKER_PID.sock http://-/health' -- ./server
  corral status --json
  corral reload            (also: kill -HUP <corral pid>)
  corral scale 8
  corral stop              (also: kill -TERM <corral pid>)

Workers get their listeners as fds 3, 4, ... with LISTEN_FDS, LISTEN_PID (their own pid),
LISTEN_FDNAMES, CORRAL_WORKER_ID and NOTIFY_SOCKET (send READY=1 to gate a reload; a worker
that never does is ready after --ready-delay, or when its --ready-cmd probe exits 0).

Exit status of `corral run`: 0 after a clean drain, 1 when workers had to be killed at the
shutdown deadline or the cluster failed, 2 on bad arguments.";

/// corral: run N copies of any server program on shared listening sockets, supervised.
#[derive(Debug, Parser)]
#[command(name = "corral", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a cluster of PROGRAM (after `--`) and supervise it until SIGTERM/SIGINT or `stop`.
    Run(Box<RunArgs>),
    /// Show the workers of a running cluster.
    ///
    /// Per worker: slot, id, pid, state, readiness, uptime, memory (Pss, else RSS), CPU, and
    /// open connections (established on corral's listeners, counted by the kernel), each over
    /// the worker's process tree, so a pre-forking program's children count on its row.
    Status {
        #[command(flatten)]
        target: Target,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rolling reload: replace the workers one batch at a time (as SIGHUP).
    Reload {
        #[command(flatten)]
        target: Target,
    },
    /// Change the number of workers.
    Scale {
        #[command(flatten)]
        target: Target,
        /// The new worker count (1 to 4096).
        workers: usize,
    },
    /// Graceful shutdown (as SIGTERM).
    Stop {
        #[command(flatten)]
        target: Target,
    },
}

/// Which cluster a command talks to.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The cluster's name: its control socket is NAME.sock in $XDG_RUNTIME_DIR/corral (or
    /// /run/corral for root).
    #[arg(long, default_value = "default", value_parser = parse_name)]
    pub name: String,
    /// The control socket's path, instead of the one derived from --name.
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

/// `corral run`'s flags; every one may also come from `--config`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// TOML file with the same settings (flags given here win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Worker count: a number, or `auto` (the CPUs this process may use, cgroup quota included).
    #[arg(long, value_name = "N|auto")]
    pub workers: Option<String>,
    /// Address to bind, repeatable: host:port, `[v6]:port`, :port, unix:/path, or fd:N (an fd
    /// corral inherited); `NAME=ADDR` names it in LISTEN_FDNAMES.
    #[arg(long, value_name = "[NAME=]ADDR")]
    pub listen: Vec<String>,
    /// Listen backlog.
    #[arg(long)]
    pub backlog: Option<i32>,
    /// How connections reach workers: `shared` (every worker accepts on the same sockets) or
    /// `kernel-rr` (each its own socket, the kernel deals connections in turn: TCP only; no
    /// per-worker window here, as the programs accept on the socket themselves and corral never
    /// sees a connection taken; `kernel-least` is refused, as they never report closes).
    #[arg(long)]
    pub policy: Option<String>,
    /// A worker that never sends READY=1 counts as ready after this long alive (250ms, 2s...;
    /// a bare number is milliseconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ready_delay: Option<Duration>,
    /// Readiness probe for programs that never send READY=1: a shell command run until it
    /// exits 0, with the worker's CORRAL_WORKER_PID, CORRAL_WORKER_ID and CORRAL_WORKER_SLOT,
    /// checking something only that worker serves (a health port or socket it opens itself:
    /// a probe of the shared listener reaches any worker). Replaces --ready-delay.
    /// Config file: readyCmd.
    #[arg(long, value_name = "CMD")]
    pub ready_cmd: Option<String>,
    /// --ready-cmd: an attempt running longer is killed and counts as failed (1 ms to 60 s,
    /// default 1s); the next starts 100 ms after. Config file: readyCmdTimeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub ready_cmd_timeout: Option<Duration>,
    /// kernel-rr: a worker leaving on reload or scale-down is dealt no new connections, then
    /// gets this long to read the ones it already accepted before its SIGTERM (a server's
    /// shutdown closes accepted connections it has not read). 0 to 60s, default 250ms;
    /// config file: stopDelay. No effect with `shared` (the worker keeps accepting until
    /// SIGTERM) or on shutdown (SIGTERM at once).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stop_delay: Option<Duration>,
    /// restart.initialDelay: first delay after a crash.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub restart_initial_delay: Option<Duration>,
    /// restart.maxDelay: ceiling of the delay (and the delay while crash-looping).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub restart_max_delay: Option<Duration>,
    /// restart.factor: growth per consecutive unstable exit.
    #[arg(long)]
    pub restart_factor: Option<f64>,
    /// restart.jitter: 0..1 random spread of each delay.
    #[arg(long)]
    pub restart_jitter: Option<f64>,
    /// restart.resetAfter: a worker up this long was stable.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub restart_reset_after: Option<Duration>,
    /// restart.crashLoop.exits: unstable exits within the window that make a crash loop.
    #[arg(long)]
    pub crash_loop_exits: Option<u32>,
    /// restart.crashLoop.window.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub crash_loop_window: Option<Duration>,
    /// restart.noRestartExitCodes: exit codes that are not restarted (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub no_restart_exit_codes: Option<Vec<i32>>,
    /// shutdown.timeout: how long workers may drain after SIGTERM before SIGKILL.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// reload.readyTimeout: a new worker must be ready within this time.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub reload_ready_timeout: Option<Duration>,
    /// reload.probation: a new worker stays up this long before its predecessor drains.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub reload_probation: Option<Duration>,
    /// reload.batch: workers replaced at a time.
    #[arg(long)]
    pub reload_batch: Option<usize>,
    /// reload.waitReady: only READY=1 makes a new worker ready (no --ready-delay).
    #[arg(long)]
    pub reload_wait_ready: bool,
    /// heartbeat.timeout: a worker that sent WATCHDOG=1 once and then stays silent this long
    /// is killed and replaced.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub heartbeat_timeout: Option<Duration>,
    /// recycle.maxRss: replace a worker whose memory passes this many bytes, checked once a
    /// second. A worker's memory is its whole process tree's (pre-forked children count):
    /// the sum of Pss (shared pages counted once), or of RSS where smaps_rollup is unreadable.
    #[arg(long, value_name = "BYTES")]
    pub recycle_max_rss: Option<u64>,
    /// metrics: serve Prometheus text on this address (host:port) at /metrics, and /ready
    /// (200 while every worker is ready and no reload runs, else 503: a readiness probe).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// The program and its arguments (after `--`).
    #[arg(last = true, value_name = "PROGRAM ARGS")]
    pub program: Vec<OsString>,
}

/// `--config corral.toml`: the keys of `supervise()` (times in ms or "2s").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    control: Option<PathBuf>,
    workers: Option<toml::Value>,
    listen: Option<Vec<String>>,
    backlog: Option<i32>,
    policy: Option<String>,
    #[serde(rename = "readyDelay")]
    ready_delay: Option<FileDuration>,
    #[serde(rename = "stopDelay")]
    stop_delay: Option<FileDuration>,
    #[serde(rename = "readyCmd")]
    ready_cmd: Option<String>,
    #[serde(rename = "readyCmdTimeout")]
    ready_cmd_timeout: Option<FileDuration>,
    command: Option<Vec<String>>,
    #[serde(default)]
    restart: FileRestart,
    #[serde(default)]
    shutdown: FileShutdown,
    #[serde(default)]
    reload: FileReload,
    #[serde(default)]
    heartbeat: FileHeartbeat,
    #[serde(default)]
    recycle: FileRecycle,
    metrics: Option<SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileRestart {
    initial_delay: Option<FileDuration>,
    max_delay: Option<FileDuration>,
    factor: Option<f64>,
    jitter: Option<f64>,
    reset_after: Option<FileDuration>,
    crash_loop: Option<FileCrashLoop>,
    no_restart_exit_codes: Option<Vec<i32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCrashLoop {
    exits: Option<u32>,
    window: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShutdown {
    timeout: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileReload {
    ready_timeout: Option<FileDuration>,
    probation: Option<FileDuration>,
    batch: Option<usize>,
    wait_ready: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHeartbeat {
    timeout: Option<FileDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileRecycle {
    max_rss: Option<u64>,
}

/// A time in the config file: milliseconds as a number (as `supervise()`), or "250ms"/"2s".
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "toml::Value")]
struct FileDuration(Duration);

impl TryFrom<toml::Value> for FileDuration {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Integer(ms) if ms >= 0 => {
                Ok(FileDuration(Duration::from_millis(ms as u64)))
            }
            toml::Value::String(s) => parse_duration(&s).map(FileDuration),
            other => Err(format!(
                "expected milliseconds (a number >= 0) or a string such as \"2s\", got a {}",
                other.type_str()
            )),
        }
    }
}

/// One listener to bind (or adopt) and hand to the workers.
#[derive(Debug, Clone)]
pub struct ListenSpec {
    /// Its name in LISTEN_FDNAMES.
    pub name: String,
    pub addr: ListenAddr,
}

/// Everything `corral run` needs, resolved and checked.
#[derive(Debug)]
pub struct RunConfig {
    pub target: Target,
    pub listen: Vec<ListenSpec>,
    pub backlog: i32,
    pub policy: RunPolicy,
    pub ready_delay: Duration,
    /// `--ready-cmd`: the probe that makes a silent worker ready instead of the delay.
    pub ready_cmd: Option<ReadyCmd>,
    /// `--stop-delay` (kernel-rr only).
    pub stop_delay: Duration,
    pub supervisor: SupervisorOptions,
    pub program: Vec<OsString>,
}

/// "250ms", "2s", "1m", or a bare number of milliseconds.
/// `--stop-delay` when not given: time for a server to read what it accepted just before
/// its slot was cleared (uvicorn reads a new connection within a loop turn).
pub const DEFAULT_STOP_DELAY: Duration = Duration::from_millis(250);
/// `--stop-delay` at most: it delays every reload step and scale-down.
pub const MAX_STOP_DELAY: Duration = Duration::from_secs(60);

fn check_stop_delay(d: Duration) -> Result<Duration, String> {
    if d > MAX_STOP_DELAY {
        return Err(format!(
            "--stop-delay (stopDelay) {} ms is more than the limit of {} s",
            d.as_millis(),
            MAX_STOP_DELAY.as_secs()
        ));
    }
    Ok(d)
}

/// `--ready-cmd-timeout` when not given.
pub const DEFAULT_READY_CMD_TIMEOUT: Duration = Duration::from_secs(1);
/// `--ready-cmd-timeout` at most (reload.readyTimeout bounds the whole wait).
pub const MAX_READY_CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// `--ready-cmd` with its timeout; `delay_given`/`wait_ready`: flags it cannot go with.
fn check_ready_cmd(
    cmd: Option<String>,
    timeout: Option<Duration>,
    delay_given: bool,
    wait_ready: bool,
) -> Result<Option<ReadyCmd>, String> {
    let Some(command) = cmd else {
        if timeout.is_some() {
            return Err(
                "--ready-cmd-timeout (readyCmdTimeout) without --ready-cmd (readyCmd)".into(),
            );
        }
        return Ok(None);
    };
    if command.trim().is_empty() {
        return Err("--ready-cmd (readyCmd): empty command".into());
    }
    if command.contains('\0') {
        return Err("--ready-cmd (readyCmd): the command contains a NUL byte".into());
    }
    if delay_given {
        return Err(
            "--ready-cmd (readyCmd) and --ready-delay (readyDelay): a worker that never sends \
             READY=1 is ready by one or the other; give one"
                .into(),
        );
    }
    if wait_ready {
        return Err(
            "--ready-cmd (readyCmd) and --reload-wait-ready (reload.waitReady): the latter \
             accepts only READY=1; give one"
                .into(),
        );
    }
    let timeout = timeout.unwrap_or(DEFAULT_READY_CMD_TIMEOUT);
    if timeout.is_zero() || timeout > MAX_READY_CMD_TIMEOUT {
        return Err(format!(
            "--ready-cmd-timeout (readyCmdTimeout) {} ms: expected 1 ms to {} s",
            timeout.as_millis(),
            MAX_READY_CMD_TIMEOUT.as_secs()
        ));
    }
    Ok(Some(ReadyCmd { command, timeout }))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "ms"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (250ms, 2s, 1m, or milliseconds)"))?;
    let ms = match unit {
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s or m)")),
    };
    if !(0.0..=7.0 * 86_400e3).contains(&ms) {
        return Err(format!("{s:?} is out of range (0 to 7 days)"));
    }
    Ok(Duration::from_micros((ms * 1e3) as u64))
}

fn parse_name(s: &str) -> Result<String, String> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        || s.starts_with('.')
    {
        return Err(format!(
            "{s:?}: a cluster name is 1 to 64 of A-Z a-z 0-9 - _ . (not starting with a dot)"
        ));
    }
    Ok(s.to_string())
}

fn parse_workers(flag: &str, v: &str) -> Result<usize, String> {
    if v == "auto" {
        return Ok(corral_core::available_parallelism());
    }
    v.parse::<usize>()
        .ok()
        .filter(|&n| (1..=corral_core::limits::MAX_WORKERS).contains(&n))
        .ok_or_else(|| {
            format!(
                "{flag} {v:?}: expected auto or a number from 1 to {}",
                corral_core::limits::MAX_WORKERS
            )
        })
}

fn parse_listen(i: usize, s: &str) -> Result<ListenSpec, String> {
    // NAME=ADDR; an address never has '=' before its first ':'.
    let (name, addr) = match s.split_once('=') {
        Some((n, a)) if !n.contains(':') => (n.to_string(), a),
        _ => (format!("listen{i}"), s),
    };
    if name.is_empty()
        || name.len() > 255
        || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
    {
        return Err(format!(
            "--listen {s:?}: a listener name is 1 to 255 printable characters without ':' \
             (LISTEN_FDNAMES separates names with ':')"
        ));
    }
    let addr: ListenAddr = addr.parse().map_err(|e| format!("--listen {s:?}: {e}"))?;
    Ok(ListenSpec { name, addr })
}

const POLICY_HELP: &str =
    "--policy: `shared` or `kernel-rr` for programs that know nothing of corral";

/// How connections reach the workers of `corral run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPolicy {
    /// Every worker accepts on the same sockets (the kernel wakes whichever it likes).
    Shared,
    /// Each worker gets its own socket of a `SO_REUSEPORT` group whose eBPF program deals
    /// the connections in turn (TCP listeners; others, or no eBPF, fall back to shared).
    KernelRr,
}

fn check_policy(p: &str) -> Result<RunPolicy, String> {
    match p {
        "shared" => Ok(RunPolicy::Shared),
        "kernel-rr" => Ok(RunPolicy::KernelRr),
        "rr" | "round-robin" => Err(format!(
            "--policy {p}: round-robin needs the primary to hand each connection over the \
             worker's corral channel, which only programs linked with corral (C ABI, Node) have; \
             {POLICY_HELP}"
        )),
        "kernel-least" | "least" | "least-p2c" => Err(format!(
            "--policy {p}: least-loaded dealing counts each worker's open connections, which a \
             worker lowers when it closes one (corral_worker_closed, or the Node addon); programs \
             that know nothing of corral never do, so every worker would look ever busier; \
             {POLICY_HELP}"
        )),
        other => Err(format!("--policy {other:?}: unknown policy; {POLICY_HELP}")),
    }
}

impl RunConfig {
    /// Flags over the config file over the engine's defaults; every value checked here or by
    /// `SupervisorOptions::validate`, whose errors name the `supervise()` option.
    pub fn resolve(a: RunArgs) -> Result<RunConfig, String> {
        let file: FileConfig = match &a.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--config {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| {
                    format!("--config {}: {}", path.display(), e.to_string().trim_end())
                })?
            }
            None => FileConfig::default(),
        };
        let target = Target {
            name: match (&a.config, &file.name) {
                // The flag's default loses to a name in the file.
                (Some(_), Some(n)) if a.target.name == "default" => {
                    parse_name(n).map_err(|e| format!("--config name: {e}"))?
                }
                _ => a.target.name.clone(),
            },
            control: a.target.control.clone().or(file.control),
        };
        let workers = match (&a.workers, &file.workers) {
            (Some(w), _) => parse_workers("--workers", w)?,
            (None, Some(toml::Value::Integer(n))) => parse_workers("workers", &n.to_string())?,
            (None, Some(toml::Value::String(s))) => parse_workers("workers", s)?,
            (None, Some(other)) => {
                return Err(format!(
                    "--config workers: expected auto or a number, got a {}",
                    other.type_str()
                ))
            }
            (None, None) => corral_core::available_parallelism(),
        };
        let listen_text = if a.listen.is_empty() {
            file.listen.unwrap_or_default()
        } else {
            a.listen.clone()
        };
        let listen = listen_text
            .iter()
            .enumerate()
            .map(|(i, s)| parse_listen(i, s))
            .collect::<Result<Vec<_>, _>>()?;
        let policy = check_policy(
            a.policy
                .as_deref()
                .or(file.policy.as_deref())
                .unwrap_or("shared"),
        )?;
        let backlog = a
            .backlog
            .or(file.backlog)
            .unwrap_or(corral_core::listener::DEFAULT_BACKLOG);
        if !(1..=65_535).contains(&backlog) {
            return Err(format!("--backlog {backlog}: expected 1 to 65535"));
        }
        let program: Vec<OsString> = if !a.program.is_empty() {
            a.program.clone()
        } else {
            file.command
                .unwrap_or_default()
                .into_iter()
                .map(OsString::from)
                .collect()
        };
        if program.is_empty() {
            return Err(
                "no program to run: give it after `--` (corral run --listen :8080 -- ./server) \
                 or as `command = [...]` in --config"
                    .into(),
            );
        }
        let d = SupervisorOptions::default();
        let r = &file.restart;
        let cl = r.crash_loop.as_ref();
        let fd = |v: Option<FileDuration>| v.map(|d| d.0);
        let restart = RestartOptions {
            initial_delay: a
                .restart_initial_delay
                .or(fd(r.initial_delay))
                .unwrap_or(d.restart.initial_delay),
            max_delay: a
                .restart_max_delay
                .or(fd(r.max_delay))
                .unwrap_or(d.restart.max_delay),
            factor: a.restart_factor.or(r.factor).unwrap_or(d.restart.factor),
            jitter: a.restart_jitter.or(r.jitter).unwrap_or(d.restart.jitter),
            reset_after: a
                .restart_reset_after
                .or(fd(r.reset_after))
                .unwrap_or(d.restart.reset_after),
            crash_loop_exits: a
                .crash_loop_exits
                .or(cl.and_then(|c| c.exits))
                .unwrap_or(d.restart.crash_loop_exits),
            crash_loop_window: a
                .crash_loop_window
                .or(fd(cl.and_then(|c| c.window)))
                .unwrap_or(d.restart.crash_loop_window),
            no_restart_exit_codes: a
                .no_restart_exit_codes
                .clone()
                .or(r.no_restart_exit_codes.clone())
                .unwrap_or_default(),
        };
        let reload = ReloadOptions {
            ready_timeout: a
                .reload_ready_timeout
                .or(fd(file.reload.ready_timeout))
                .unwrap_or(d.reload.ready_timeout),
            probation: a
                .reload_probation
                .or(fd(file.reload.probation))
                .unwrap_or(d.reload.probation),
            batch: a
                .reload_batch
                .or(file.reload.batch)
                .unwrap_or(d.reload.batch),
            wait_ready: a.reload_wait_ready || file.reload.wait_ready.unwrap_or(false),
        };
        let heartbeat = a
            .heartbeat_timeout
            .or(fd(file.heartbeat.timeout))
            .map(|timeout| HeartbeatOptions {
                // The engine's watchdog looks every `interval` (at most 1 s); sd_notify
                // workers choose their own ping rate, so only the timeout is a setting here.
                interval: (timeout / 4).max(Duration::from_millis(1)),
                timeout,
            });
        let supervisor = SupervisorOptions {
            workers,
            restart,
            shutdown_timeout: a
                .shutdown_timeout
                .or(fd(file.shutdown.timeout))
                .unwrap_or(d.shutdown_timeout),
            reload,
            heartbeat,
            recycle: RecycleOptions {
                max_rss: a.recycle_max_rss.or(file.recycle.max_rss),
                ..RecycleOptions::default()
            },
            metrics: a.metrics.or(file.metrics),
        };
        supervisor.validate().map_err(|e| e.to_string())?;
        let ready_delay = a.ready_delay.or(fd(file.ready_delay));
        let ready_cmd = check_ready_cmd(
            a.ready_cmd.clone().or(file.ready_cmd),
            a.ready_cmd_timeout.or(fd(file.ready_cmd_timeout)),
            ready_delay.is_some(),
            supervisor.reload.wait_ready,
        )?;
        Ok(RunConfig {
            target,
            listen,
            backlog,
            policy,
            ready_delay: ready_delay.unwrap_or(Duration::from_secs(1)),
            ready_cmd,
            stop_delay: check_stop_delay(
                a.stop_delay
                    .or(fd(file.stop_delay))
                    .unwrap_or(DEFAULT_STOP_DELAY),
            )?,
            supervisor,
            program,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_and_bare_milliseconds() {
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("8000000s")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_duration("s").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn stop_delay_is_0_to_60_seconds() {
        assert_eq!(check_stop_delay(Duration::ZERO), Ok(Duration::ZERO));
        assert_eq!(check_stop_delay(MAX_STOP_DELAY), Ok(MAX_STOP_DELAY));
        let e = check_stop_delay(Duration::from_secs(61)).unwrap_err();
        assert!(e.contains("--stop-delay") && e.contains("60 s"), "{e}");
    }

    #[test]
    fn ready_cmd_is_checked_and_named_in_errors() {
        let ms = Duration::from_millis;
        let c = check_ready_cmd(Some("true".into()), None, false, false)
            .unwrap()
            .unwrap();
        assert_eq!(c.timeout, DEFAULT_READY_CMD_TIMEOUT);
        assert!(check_ready_cmd(None, None, true, true).unwrap().is_none());
        let err = |cmd: Option<&str>, t: Option<Duration>, delay: bool, wait: bool| {
            check_ready_cmd(cmd.map(String::from), t, delay, wait).unwrap_err()
        };
        assert!(err(Some(" "), None, false, false).contains("--ready-cmd (readyCmd): empty"));
        assert!(err(Some("true"), None, true, false).contains("--ready-delay"));
        assert!(err(Some("true"), None, false, true).contains("--reload-wait-ready"));
        assert!(err(Some("true"), Some(ms(0)), false, false).contains("--ready-cmd-timeout"));
        assert!(err(Some("true"), Some(ms(61_000)), false, false).contains("60 s"));
        assert!(err(None, Some(ms(5)), false, false).contains("without --ready-cmd"));
    }

    #[test]
    fn listeners_take_an_optional_name_and_refuse_colons_in_it() {
        let l = parse_listen(0, "web=127.0.0.1:80").unwrap();
        assert_eq!(l.name, "web");
        let l = parse_listen(1, "[::1]:80").unwrap();
        assert_eq!(l.name, "listen1");
        let l = parse_listen(2, "unix:/tmp/a=b.sock").unwrap();
        assert_eq!(l.addr, ListenAddr::Unix("/tmp/a=b.sock".into()));
        assert!(parse_listen(0, "=127.0.0.1:80")
            .unwrap_err()
            .contains("listener name"));
    }

    #[test]
    fn shared_and_kernel_rr_are_taken_rr_and_kernel_least_are_refused_with_the_reason() {
        assert_eq!(check_policy("shared"), Ok(RunPolicy::Shared));
        assert_eq!(check_policy("kernel-rr"), Ok(RunPolicy::KernelRr));
        assert!(check_policy("rr").unwrap_err().contains("channel"));
        let e = check_policy("kernel-least").unwrap_err();
        assert!(
            e.contains("--policy kernel-least") && e.contains("corral_worker_closed"),
            "{e}"
        );
        assert!(check_policy("bogus")
            .unwrap_err()
            .contains("unknown policy"));
    }
}
