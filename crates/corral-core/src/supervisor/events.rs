//! What the supervisor reports to the application: [`SupervisorEvent`], the [`Cause`] of a
//! replacement and the [`ReloadReport`] of a rolling reload.

use crate::event::WorkerId;
use crate::sys::ExitStatus;
use std::time::Duration;

/// Why a worker was replaced.
#[derive(Debug, Clone, PartialEq)]
pub enum Cause {
    /// It died before it listened (a start-up failure).
    Boot(ExitStatus),
    /// It died while serving.
    Crash(ExitStatus),
    /// Its heartbeats stopped.
    Hang,
    /// It went over a recycling limit.
    Recycle(String),
    /// A rolling reload replaced it.
    Reload,
    /// Its channel to the primary broke (a malformed frame) while it was serving: it can no
    /// longer be given connections or asked to leave, so it is stopped (SIGTERM, SIGKILL
    /// after `shutdown.timeout`) and replaced.
    Channel,
}

impl Cause {
    /// Short label: boot, crash, hang, recycle, reload.
    pub fn label(&self) -> &'static str {
        match self {
            Cause::Boot(_) => "boot",
            Cause::Crash(_) => "crash",
            Cause::Hang => "hang",
            Cause::Recycle(_) => "recycle",
            Cause::Reload => "reload",
            Cause::Channel => "channel",
        }
    }
}

/// The outcome of a rolling reload.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadReport {
    /// Every worker was replaced.
    pub ok: bool,
    /// Workers replaced before it ended.
    pub replaced: usize,
    /// Why it stopped early.
    pub reason: Option<String>,
    /// How long it took.
    pub duration: Duration,
}

/// What the supervisor did, for the application (logs, alerts, tests).
#[derive(Debug, Clone, PartialEq)]
pub enum SupervisorEvent {
    /// A replacement worker was started for `slot`.
    Restart {
        /// Slot.
        slot: usize,
        /// The new worker.
        worker: WorkerId,
        /// The worker it replaces, if one exited.
        previous: Option<WorkerId>,
        /// Why.
        cause: Cause,
        /// The backoff delay waited.
        delay: Duration,
    },
    /// A slot entered a crash loop: it now retries at the maximum delay.
    CrashLoop {
        /// Slot.
        slot: usize,
        /// The exits in the window, oldest first.
        exits: Vec<ExitStatus>,
    },
    /// A worker exited with a do-not-restart code; its slot stays empty.
    NoRestart {
        /// Slot.
        slot: usize,
        /// The worker.
        worker: WorkerId,
        /// How it exited.
        status: ExitStatus,
    },
    /// A worker stopped sending heartbeats and was killed.
    Hang {
        /// Slot.
        slot: usize,
        /// The worker.
        worker: WorkerId,
        /// Time since its last heartbeat.
        silent_for: Duration,
    },
    /// A worker went over a recycling limit; a replacement is starting.
    Recycle {
        /// Slot.
        slot: usize,
        /// The worker being replaced.
        worker: WorkerId,
        /// "rss 600000000 > 536870912" or "connections 1000 >= 1000".
        reason: String,
    },
    /// A rolling reload ended.
    Reload(ReloadReport),
    /// The worker count changed.
    Scaled {
        /// Before.
        from: usize,
        /// After.
        to: usize,
    },
}
