//! `--ready-cmd`: readiness for programs that never speak sd_notify, by a probe command.
//!
//! A TCP or HTTP probe of the cluster's own listener cannot say anything about one worker:
//! with `shared` sockets the kernel gives the probe's connection to whichever worker it
//! wakes (an old one during a reload), and with `kernel-rr` the probe would take a worker's
//! turn from a client. What can answer for one worker is something only that worker serves:
//! a health port or socket it opens itself, named from its environment (`CORRAL_WORKER_ID`,
//! its pid). So the probe is a shell command, run with that worker's `CORRAL_WORKER_PID`,
//! `CORRAL_WORKER_ID` and `CORRAL_WORKER_SLOT`, which does the TCP or HTTP check
//! (`curl -sf --unix-socket /run/app/$CORRAL_WORKER_PID.sock http://-/health`): exit status 0
//! is ready. Until then the attempt is repeated `RETRY_AFTER` after the previous one ended;
//! an attempt running past `--ready-cmd-timeout` is killed (its whole process group) and
//! counts as a failure. The first success tells the supervisor as `READY=1` would, which
//! gates the rolling reload (`reload.readyTimeout` bounds the whole wait).
//!
//! Attempts run in their own process group without corral's fds (everything corral opens is
//! close-on-exec) and are reaped by pid; the engine reaps only its workers' pids.

use corral_core::WorkerId;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Pause between the end of a failed attempt and the next one.
pub const RETRY_AFTER: Duration = Duration::from_millis(100);
/// How often a running attempt is looked at (the loop has no fd for a child's exit).
const CHECK_EVERY: Duration = Duration::from_millis(20);

/// `--ready-cmd` and its timeout, checked.
#[derive(Debug, Clone)]
pub struct ReadyCmd {
    pub command: String,
    pub timeout: Duration,
}

/// Who the probe is about.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub id: WorkerId,
    pub pid: i32,
    pub slot: usize,
}

struct Attempt {
    child: Child,
    deadline: Instant,
}

/// The probes of the workers not yet ready.
pub struct Probes {
    cmd: ReadyCmd,
    running: HashMap<WorkerId, Attempt>,
    /// When the next attempt of a worker may start.
    next: HashMap<WorkerId, Instant>,
    attempts: HashMap<WorkerId, u32>,
}

/// What one pass over a worker found.
pub enum Outcome {
    /// Its probe succeeded after this many attempts.
    Ready(u32),
    /// Not yet.
    Waiting,
}

impl Probes {
    pub fn new(cmd: ReadyCmd) -> Probes {
        Probes {
            cmd,
            running: HashMap::new(),
            next: HashMap::new(),
            attempts: HashMap::new(),
        }
    }

    /// Looks at `t`'s running attempt, or starts one when due.
    pub fn poll(&mut self, t: Target, now: Instant) -> Outcome {
        if let Some(a) = self.running.get_mut(&t.id) {
            match a.child.try_wait() {
                Ok(Some(st)) => {
                    self.running.remove(&t.id);
                    if st.success() {
                        let n = self.attempts.remove(&t.id).unwrap_or(1);
                        self.next.remove(&t.id);
                        return Outcome::Ready(n);
                    }
                    self.next.insert(t.id, now + RETRY_AFTER);
                }
                Ok(None) if now >= a.deadline => {
                    self.stop(t.id);
                    self.next.insert(t.id, now + RETRY_AFTER);
                }
                Ok(None) => {}
                Err(e) => {
                    say!("corral: worker {}: --ready-cmd: wait: {e}", t.id);
                    self.stop(t.id);
                    self.next.insert(t.id, now + RETRY_AFTER);
                }
            }
            return Outcome::Waiting;
        }
        if self.next.get(&t.id).is_some_and(|&at| now < at) {
            return Outcome::Waiting;
        }
        let spawned = Command::new("/bin/sh")
            .arg("-c")
            .arg(&self.cmd.command)
            .env("CORRAL_WORKER_PID", t.pid.to_string())
            .env("CORRAL_WORKER_ID", t.id.to_string())
            .env("CORRAL_WORKER_SLOT", t.slot.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so a timeout kills what the shell started too.
            .process_group(0)
            .spawn();
        match spawned {
            Ok(child) => {
                *self.attempts.entry(t.id).or_default() += 1;
                self.running.insert(
                    t.id,
                    Attempt {
                        child,
                        deadline: now + self.cmd.timeout,
                    },
                );
            }
            Err(e) => {
                say!("corral: worker {}: --ready-cmd: /bin/sh: {e}", t.id);
                self.next.insert(t.id, now + RETRY_AFTER);
            }
        }
        Outcome::Waiting
    }

    /// The worker left or became ready otherwise: its attempt is killed and reaped.
    pub fn forget(&mut self, id: WorkerId) {
        self.stop(id);
        self.next.remove(&id);
        self.attempts.remove(&id);
    }

    fn stop(&mut self, id: WorkerId) {
        if let Some(mut a) = self.running.remove(&id) {
            let _ = killpg(Pid::from_raw(a.child.id() as i32), Signal::SIGKILL);
            let _ = a.child.wait();
        }
    }

    /// When the loop must look again.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let running = (!self.running.is_empty()).then_some(now + CHECK_EVERY);
        running.into_iter().chain(self.next.values().copied()).min()
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        let ids: Vec<WorkerId> = self.running.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}
