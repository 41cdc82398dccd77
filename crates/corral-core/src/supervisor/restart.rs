//! Replacing workers that die: a worker's exit (or broken channel) schedules its slot's
//! restart after the backoff delay, and `run_restarts` starts the ones that are due.

use super::events::{Cause, SupervisorEvent};
use super::{Role, Supervisor};
use crate::event::WorkerId;
use crate::primary::Primary;
use crate::sys::ExitStatus;
use std::time::Instant;

pub(super) fn describe(s: ExitStatus) -> String {
    match (s.code, s.signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "exited".into(),
    }
}

impl Supervisor {
    /// A worker's channel closed. Asked for (drain, reload, scale, the worker's own goodbye):
    /// its exit follows. Otherwise the channel broke under it (a protocol error): it would
    /// stay up serving nobody, shown as ready, so it is stopped and its exit replaces it.
    pub(super) fn on_disconnect(&mut self, p: &mut Primary, id: WorkerId) {
        if self.shutting_down || p.worker(id).map_or(true, |i| i.exited_after_disconnect) {
            return;
        }
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.role == Role::Draining || w.kill_cause.is_some() {
            return;
        }
        w.kill_cause = Some(Cause::Channel);
        w.kill_at = Some(Instant::now() + self.opts.shutdown_timeout);
        let _ = p.kill(id, libc::SIGTERM);
    }

    pub(super) fn on_exit(&mut self, p: &mut Primary, id: WorkerId, status: ExitStatus) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        let now = Instant::now();
        let slot = w.slot;
        // A replacement that died: the reload (or recycle) stops; the old worker keeps serving.
        if w.role == Role::Next {
            self.slots[slot].next = None;
            if self.recycling == Some(slot) {
                self.recycling = None;
            }
            if let Some(r) = self.reload.as_mut() {
                r.batch.retain(|(_, wid, _)| *wid != id);
                let how = describe(status);
                self.fail_reload(
                    p,
                    format!("new worker {id} for slot {slot} {how} before taking over"),
                );
            }
            return;
        }
        if w.role == Role::Draining || self.shutting_down || p.is_shutting_down() {
            return;
        }
        let s = &mut self.slots[slot];
        if s.current == Some(id) {
            s.current = None;
        }
        if s.retired {
            return;
        }
        if let Some(code) = status.code {
            if self.opts.restart.no_restart_exit_codes.contains(&code) {
                self.events.push_back(SupervisorEvent::NoRestart {
                    slot,
                    worker: id,
                    status,
                });
                return;
            }
        }
        let cause = w.kill_cause.clone().unwrap_or(if w.listening {
            Cause::Crash(status)
        } else {
            Cause::Boot(status)
        });
        let d = s
            .backoff
            .on_exit(&self.opts.restart, now.duration_since(w.started), now);
        s.recent_exits.push_back(status);
        while s.recent_exits.len() > self.opts.restart.crash_loop_exits as usize {
            s.recent_exits.pop_front();
        }
        if d.entered_crash_loop {
            self.events.push_back(SupervisorEvent::CrashLoop {
                slot,
                exits: s.recent_exits.iter().copied().collect(),
            });
        }
        let delay = self.jitter.apply(d.delay, self.opts.restart.jitter);
        s.restart_at = Some((now + delay, Some(id), cause, delay));
    }

    pub(super) fn run_restarts(&mut self, p: &mut Primary, now: Instant) {
        for slot in 0..self.slots.len() {
            let due = matches!(self.slots[slot].restart_at, Some((t, ..)) if t <= now);
            if !due {
                continue;
            }
            let (_, previous, cause, delay) = self.slots[slot].restart_at.take().expect("due");
            match self.start_worker(p, slot, Role::Current) {
                Ok(id) => {
                    let s = &mut self.slots[slot];
                    s.current = Some(id);
                    s.restarts += 1;
                    s.last_cause = Some(cause.label().to_string());
                    *self
                        .restarts_by_cause
                        .entry(cause.label().to_string())
                        .or_default() += 1;
                    self.events.push_back(SupervisorEvent::Restart {
                        slot,
                        worker: id,
                        previous,
                        cause,
                        delay,
                    });
                }
                Err(_) => {
                    // Could not even start it (fork/exec failed): try again at the max delay.
                    let max = self.opts.restart.max_delay;
                    self.slots[slot].restart_at = Some((now + max, previous, cause, max));
                }
            }
        }
    }
}
