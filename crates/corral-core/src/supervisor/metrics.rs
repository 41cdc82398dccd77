//! Per-worker metrics: a snapshot, its Prometheus text form, and an optional HTTP endpoint
//! (`endpoint`: its own thread and poll, deadlines and limits per client).

pub mod endpoint;
pub use endpoint::Endpoint;

/// One worker's figures. `slot` is a stable label: a replacement takes its predecessor's slot.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerMetrics {
    /// Stable position (0-based) that survives restarts.
    pub slot: usize,
    /// Worker id.
    pub id: u64,
    /// Process id.
    pub pid: i32,
    /// "starting", "ready", "draining", or "disconnected" (its channel broke; it is being
    /// stopped and replaced).
    pub state: &'static str,
    /// Connections handed to it (round-robin).
    pub handed_off: u64,
    /// Connections it handed back to be dealt to another worker (at its connection limit).
    pub refused: u64,
    /// Connections read back unread from its channel when it stalled (its loop blocked for
    /// the stall time, or stopped), dealt to others.
    pub taken_back: u64,
    /// Connections sent and not yet taken.
    pub inflight: u32,
    /// Connections it reported open (heartbeats), if it reports.
    pub active: Option<u32>,
    /// Restarts of its slot so far.
    pub restarts: u64,
    /// Why its slot was last restarted.
    pub last_restart_cause: Option<String>,
    /// Seconds since it started.
    pub uptime_seconds: f64,
    /// Resident memory (of its process tree, as Pss, with
    /// [`Supervisor::count_descendants`](super::Supervisor::count_descendants)).
    pub rss_bytes: u64,
    /// CPU time, user + system (of its tree, with reaped children's, with
    /// `count_descendants`).
    pub cpu_seconds: f64,
}

/// The whole cluster's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Workers, by slot then id.
    pub workers: Vec<WorkerMetrics>,
    /// Restarts by cause ("crash", "boot", "hang", "recycle"...).
    pub restarts_by_cause: Vec<(String, u64)>,
    /// Slots currently crash-looping.
    pub crash_looping_slots: Vec<usize>,
    /// Completed rolling reloads.
    pub reloads: u64,
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut o = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, String)>| {
            o.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in rows {
                if labels.is_empty() {
                    o.push_str(&format!("{name} {v}\n"));
                } else {
                    o.push_str(&format!("{name}{{{labels}}} {v}\n"));
                }
            }
        };
        let w = &self.workers;
        let slot = |m: &WorkerMetrics| format!("slot=\"{}\"", m.slot);
        family(
            "corral_worker_info",
            "gauge",
            "Worker in each slot: id, pid and state.",
            w.iter()
                .map(|m| {
                    (
                        format!(
                            "slot=\"{}\",id=\"{}\",pid=\"{}\",state=\"{}\"",
                            m.slot, m.id, m.pid, m.state
                        ),
                        "1".into(),
                    )
                })
                .collect(),
        );
        family(
            "corral_worker_connections_handed_off_total",
            "counter",
            "Connections the primary handed to the worker.",
            w.iter()
                .map(|m| (slot(m), m.handed_off.to_string()))
                .collect(),
        );
        family(
            "corral_worker_connections_refused_total",
            "counter",
            "Connections the worker handed back (at its connection limit), dealt to others.",
            w.iter().map(|m| (slot(m), m.refused.to_string())).collect(),
        );
        family(
            "corral_worker_connections_taken_back_total",
            "counter",
            "Connections read back unread from the worker's channel when it stalled, dealt to others.",
            w.iter()
                .map(|m| (slot(m), m.taken_back.to_string()))
                .collect(),
        );
        family(
            "corral_worker_connections_inflight",
            "gauge",
            "Connections sent to the worker and not yet taken off its channel.",
            w.iter()
                .map(|m| (slot(m), m.inflight.to_string()))
                .collect(),
        );
        family(
            "corral_worker_connections_active",
            "gauge",
            "Connections the worker reported open in its last heartbeat.",
            w.iter()
                .filter_map(|m| m.active.map(|a| (slot(m), a.to_string())))
                .collect(),
        );
        family(
            "corral_worker_restarts_total",
            "counter",
            "Restarts of the slot.",
            w.iter()
                .map(|m| (slot(m), m.restarts.to_string()))
                .collect(),
        );
        family(
            "corral_worker_uptime_seconds",
            "gauge",
            "Seconds since the worker started.",
            w.iter()
                .map(|m| (slot(m), format!("{:.3}", m.uptime_seconds)))
                .collect(),
        );
        family(
            "corral_worker_resident_memory_bytes",
            "gauge",
            "Resident set size of the worker (the Pss of its process tree when its front counts descendants, as the corral command does).",
            w.iter()
                .map(|m| (slot(m), m.rss_bytes.to_string()))
                .collect(),
        );
        family(
            "corral_worker_cpu_seconds_total",
            "counter",
            "CPU time of the worker, user and system.",
            w.iter()
                .map(|m| (slot(m), format!("{:.3}", m.cpu_seconds)))
                .collect(),
        );
        family(
            "corral_restarts_total",
            "counter",
            "Restarts by cause.",
            self.restarts_by_cause
                .iter()
                .map(|(c, n)| (format!("cause=\"{}\"", esc(c)), n.to_string()))
                .collect(),
        );
        family(
            "corral_crash_looping",
            "gauge",
            "1 while the slot is crash-looping.",
            self.crash_looping_slots
                .iter()
                .map(|s| (format!("slot=\"{s}\""), "1".into()))
                .collect(),
        );
        family(
            "corral_reloads_total",
            "counter",
            "Completed rolling reloads.",
            vec![(String::new(), self.reloads.to_string())],
        );
        o
    }
}
