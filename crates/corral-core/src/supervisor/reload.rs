//! Rolling reload: one batch of slots at a time, start the new worker, wait until it listens
//! (or says ready), keep it on probation, then drain the old one. A crash or a missed deadline
//! stops the reload and the old generation keeps serving.

use super::events::{ReloadReport, SupervisorEvent};
use super::{Role, Supervisor};
use crate::error::{Error, Result};
use crate::event::WorkerId;
use crate::primary::Primary;
use std::collections::VecDeque;
use std::time::Instant;

#[derive(Debug)]
pub(super) enum Phase {
    Starting(Instant),
    Probation(Instant),
}

#[derive(Debug)]
pub(super) struct Reload {
    pub(super) queue: VecDeque<usize>,
    pub(super) batch: Vec<(usize, WorkerId, Phase)>,
    pub(super) replaced: usize,
    pub(super) started: Instant,
}

impl Supervisor {
    /// Starts a rolling reload of every worker. Refused while one runs.
    pub fn reload(&mut self, p: &mut Primary) -> Result<()> {
        if self.reload.is_some() {
            return Err(Error::wrong_state(
                "a reload is already in progress; wait for its report",
            ));
        }
        if self.shutting_down {
            return Err(Error::wrong_state("the cluster is shutting down"));
        }
        let queue = (0..self.slots.len())
            .filter(|&s| !self.slots[s].retired)
            .collect();
        self.reload = Some(Reload {
            queue,
            batch: Vec::new(),
            replaced: 0,
            started: Instant::now(),
        });
        self.tick(p);
        Ok(())
    }

    /// A reload is running.
    pub fn reloading(&self) -> bool {
        self.reload.is_some()
    }

    pub(super) fn run_reload(&mut self, p: &mut Primary, now: Instant) {
        let Some(mut r) = self.reload.take() else {
            return;
        };
        if r.batch.is_empty() {
            while r.batch.len() < self.opts.reload.batch {
                let Some(slot) = r.queue.pop_front() else {
                    break;
                };
                match self.start_worker(p, slot, Role::Next) {
                    Ok(id) => {
                        self.slots[slot].next = Some(id);
                        r.batch.push((
                            slot,
                            id,
                            Phase::Starting(now + self.opts.reload.ready_timeout),
                        ));
                    }
                    Err(e) => {
                        self.reload = Some(r);
                        self.fail_reload(p, format!("could not start a new worker: {e}"));
                        return;
                    }
                }
            }
        }
        let mut failure = None;
        let mut done = Vec::new();
        for (i, (slot, id, phase)) in r.batch.iter_mut().enumerate() {
            let Some(w) = self.workers.get(id) else {
                continue;
            };
            match phase {
                Phase::Starting(deadline) => {
                    let up = if self.opts.reload.wait_ready {
                        w.ready
                    } else {
                        w.listening || w.ready
                    };
                    if up {
                        *phase = Phase::Probation(now + self.opts.reload.probation);
                    } else if now >= *deadline {
                        failure = Some(format!(
                            "new worker {id} for slot {slot} missed its readiness deadline of {} ms",
                            self.opts.reload.ready_timeout.as_millis()
                        ));
                    }
                }
                Phase::Probation(until) if now >= *until => done.push(i),
                Phase::Probation(_) => {}
            }
        }
        for i in done.into_iter().rev() {
            let (slot, id, _) = r.batch.remove(i);
            self.promote(p, slot, id);
            r.replaced += 1;
        }
        self.reload = Some(r);
        if let Some(reason) = failure {
            self.fail_reload(p, reason);
            return;
        }
        let finished = self
            .reload
            .as_ref()
            .is_some_and(|r| r.batch.is_empty() && r.queue.is_empty());
        if finished {
            let r = self.reload.take().expect("checked");
            self.reloads += 1;
            self.events.push_back(SupervisorEvent::Reload(ReloadReport {
                ok: true,
                replaced: r.replaced,
                reason: None,
                duration: r.started.elapsed(),
            }));
        } else if self.reload.as_ref().is_some_and(|r| r.batch.is_empty()) {
            // Start the next batch now.
            self.run_reload(p, now);
        }
    }

    /// The new worker takes the slot; the old one drains (no connection is lost: the primary
    /// stops handing it connections and takes back any it had not received).
    pub(super) fn promote(&mut self, p: &mut Primary, slot: usize, new: WorkerId) {
        let s = &mut self.slots[slot];
        let old = s.current.replace(new);
        s.next = None;
        if let Some(w) = self.workers.get_mut(&new) {
            w.role = Role::Current;
        }
        if let Some(old) = old {
            if let Some(w) = self.workers.get_mut(&old) {
                w.role = Role::Draining;
            }
            let _ = p.disconnect(old);
        }
    }

    pub(super) fn fail_reload(&mut self, p: &mut Primary, reason: String) {
        let Some(r) = self.reload.take() else { return };
        for (slot, id, _) in &r.batch {
            self.slots[*slot].next = None;
            if let Some(w) = self.workers.get_mut(id) {
                w.role = Role::Draining;
                if w.listening {
                    let _ = p.disconnect(*id);
                } else {
                    let _ = p.kill(*id, libc::SIGKILL);
                }
            }
        }
        self.events.push_back(SupervisorEvent::Reload(ReloadReport {
            ok: false,
            replaced: r.replaced,
            reason: Some(reason),
            duration: r.started.elapsed(),
        }));
    }

    pub(super) fn abort_reload(&mut self, reason: &str) {
        if let Some(r) = self.reload.take() {
            self.events.push_back(SupervisorEvent::Reload(ReloadReport {
                ok: false,
                replaced: r.replaced,
                reason: Some(reason.into()),
                duration: r.started.elapsed(),
            }));
        }
    }
}
