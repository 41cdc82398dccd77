//! Recycling: a worker past its RSS limit or its count of connections served is replaced by a
//! fresh one, started first so its slot keeps serving.

use super::events::SupervisorEvent;
use super::{Role, Supervisor};
use crate::primary::Primary;
use std::time::{Duration, Instant};

/// How often workers' memory is compared with `recycle.maxRss`.
const RSS_CHECK_EVERY: Duration = Duration::from_secs(1);

impl Supervisor {
    pub(super) fn run_recycle(&mut self, p: &mut Primary) {
        if let Some(slot) = self.recycling {
            // Replacement started: promote it once it listens.
            if let Some(next) = self.slots[slot].next {
                if self
                    .workers
                    .get(&next)
                    .is_some_and(|w| w.listening || w.ready)
                {
                    self.promote(p, slot, next);
                    self.slots[slot].restarts += 1;
                    self.slots[slot].last_cause = Some("recycle".into());
                    *self.restarts_by_cause.entry("recycle".into()).or_default() += 1;
                    self.recycling = None;
                }
            } else {
                self.recycling = None;
            }
            return;
        }
        if self.reload.is_some()
            || (self.opts.recycle.max_rss.is_none() && self.opts.recycle.max_connections.is_none())
        {
            return;
        }
        // RSS is read once a second (the tick runs at every event; a process tree costs a
        // walk of /proc and a smaps_rollup per process), connection counts at every tick.
        let now = Instant::now();
        let check_rss = self.opts.recycle.max_rss.is_some()
            && self
                .rss_checked_at
                .map_or(true, |t| now.duration_since(t) >= RSS_CHECK_EVERY);
        if check_rss {
            self.rss_checked_at = Some(now);
        }
        for slot in 0..self.slots.len() {
            let Some(id) = self.slots[slot].current else {
                continue;
            };
            let Some(w) = self.workers.get(&id) else {
                continue;
            };
            if !w.listening {
                continue;
            }
            let Some(info) = p.worker(id) else { continue };
            let mut reason = None;
            if let Some(limit) = w.recycle_at {
                if info.handed_off >= limit {
                    reason = Some(format!("connections {} >= {limit}", info.handed_off));
                }
            }
            if let (Some(max), None, true) = (self.opts.recycle.max_rss, &reason, check_rss) {
                if let Some((rss, _)) = self.resources(info.pid) {
                    if rss > max {
                        reason = Some(format!("rss {rss} > {max}"));
                    }
                }
            }
            let Some(reason) = reason else { continue };
            if let Ok(next) = self.start_worker(p, slot, Role::Next) {
                self.slots[slot].next = Some(next);
                self.recycling = Some(slot);
                self.events.push_back(SupervisorEvent::Recycle {
                    slot,
                    worker: id,
                    reason,
                });
            }
            return; // one at a time
        }
    }
}
