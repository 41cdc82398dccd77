//! Per-worker metrics: a snapshot, its Prometheus text form, and an optional HTTP endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One worker's figures. `slot` is a stable label: a replacement takes its predecessor's slot.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerMetrics {
    /// Stable position (0-based) that survives restarts.
    pub slot: usize,
    /// Worker id.
    pub id: u64,
    /// Process id.
    pub pid: i32,
    /// "starting", "ready" or "draining".
    pub state: &'static str,
    /// Connections handed to it (round-robin).
    pub handed_off: u64,
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
    /// Resident memory.
    pub rss_bytes: u64,
    /// CPU time, user + system.
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
            "Resident set size of the worker.",
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

/// A metrics endpoint: serves the latest text on every HTTP request, on its own thread.
#[derive(Debug)]
pub struct Endpoint {
    text: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Endpoint {
    /// Binds `addr` (use 127.0.0.1 unless you mean to expose it) and starts serving.
    pub fn start(addr: SocketAddr) -> std::io::Result<Endpoint> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let text = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t2, s2) = (text.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("corral-metrics".into()).spawn(move || {
            while !s2.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut buf = [0u8; 2048];
                        let mut got = 0;
                        while got < buf.len() {
                            match c.read(&mut buf[got..]) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => got += n,
                            }
                            if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                        let body = t2.lock().map(|t| t.clone()).unwrap_or_default();
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = c.write_all(head.as_bytes()).and_then(|_| c.write_all(body.as_bytes()));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
        Ok(Endpoint {
            text,
            stop,
            addr,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the served text.
    pub fn publish(&self, text: String) {
        if let Ok(mut t) = self.text.lock() {
            *t = text;
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
