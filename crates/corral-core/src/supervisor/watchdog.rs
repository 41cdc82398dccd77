//! Hang watchdog: a worker whose heartbeats stop for longer than the configured timeout is
//! killed and replaced.

use super::events::{Cause, SupervisorEvent};
use super::{Role, Supervisor};
use crate::primary::Primary;
use std::time::Instant;

impl Supervisor {
    pub(super) fn run_watchdog(&mut self, p: &mut Primary, now: Instant) {
        let Some(h) = self.opts.heartbeat.clone() else {
            return;
        };
        let mut hung = Vec::new();
        for (&id, w) in &self.workers {
            if w.role == Role::Draining || w.kill_cause.is_some() {
                continue;
            }
            let Some(info) = p.worker(id) else { continue };
            let last = info.last_heartbeat.max(w.heartbeat_at);
            let Some(since) = last.or(w.online_at) else {
                continue;
            };
            let silent = now.saturating_duration_since(since);
            if silent > h.timeout {
                hung.push((id, w.slot, silent));
            }
        }
        for (id, slot, silent_for) in hung {
            if let Some(w) = self.workers.get_mut(&id) {
                w.kill_cause = Some(Cause::Hang);
            }
            self.events.push_back(SupervisorEvent::Hang {
                slot,
                worker: id,
                silent_for,
            });
            let _ = p.kill(id, libc::SIGKILL);
        }
    }
}
