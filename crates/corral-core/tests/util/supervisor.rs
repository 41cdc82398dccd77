//! The supervisor tests' harness: a [`Cluster`] that supervises the fixture worker, run until a
//! condition holds (with a deadline), recording the primary's and the supervisor's events as
//! values so tests match them structurally; and a client thread that loads it meanwhile.

use super::{request, FIXTURE};
use corral_core::supervisor::{Metrics, ReloadReport, RestartOptions};
use corral_core::{
    BoundAddr, Cluster, ClusterEvent, Event, Primary, PrimaryOptions, SpawnSpec, StdioSpec,
    SupervisorEvent, SupervisorOptions,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What each slot runs: argv for the fixture (a test may change it while running).
pub type Plan = Arc<Mutex<Box<dyn Fn(usize) -> Vec<String> + Send>>>;

pub struct Sup {
    pub c: Cluster,
    /// Every event as Debug text, for failure messages only.
    pub log: Vec<String>,
    pub sup_events: Vec<(Instant, SupervisorEvent)>,
    /// The primary's events, as they came.
    pub events: Vec<(Instant, Event)>,
}

pub fn plan(f: impl Fn(usize) -> Vec<String> + Send + 'static) -> Plan {
    Arc::new(Mutex::new(Box::new(f)))
}

pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

pub fn start(plan: Plan, opts: SupervisorOptions, env: &[(&str, &str)]) -> Sup {
    start_with(plan, opts, env, PrimaryOptions::default())
}

/// [`start`] on a primary with these options (a policy, routing).
pub fn start_with(
    plan: Plan,
    opts: SupervisorOptions,
    env: &[(&str, &str)],
    primary: PrimaryOptions,
) -> Sup {
    super::no_policy_override();
    let p = Primary::new(primary).unwrap();
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
        env.iter().map(|(k, v)| (k.into(), v.into())).collect();
    let spawn = Box::new(move |p: &mut Primary, slot: usize| {
        let argv = (plan.lock().unwrap())(slot);
        let spec = SpawnSpec {
            program: FIXTURE.into(),
            args: argv.into_iter().map(Into::into).collect(),
            env: env.clone(),
            stdio: vec![StdioSpec::Null, StdioSpec::Inherit, StdioSpec::Inherit],
            ..Default::default()
        };
        p.spawn_worker_with(&spec, &[])
    });
    let mut c = Cluster::from_primary(p);
    c.supervise(opts, spawn).unwrap();
    Sup {
        c,
        log: Vec::new(),
        sup_events: Vec::new(),
        events: Vec::new(),
    }
}

impl Sup {
    pub fn metrics(&self) -> Metrics {
        self.c.supervisor().unwrap().metrics(self.c.primary())
    }

    /// Runs the loop until `done` holds (checked after every event), or panics at `timeout`.
    pub fn run_until(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&Sup) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "timed out waiting for {what}; log: {:#?}",
                self.log
            );
            // The cluster bounds the wait by its own deadlines.
            let t = (deadline - now).min(Duration::from_millis(20));
            self.c.dispatch(Some(t)).unwrap();
            while let Some(ev) = self.c.next_event() {
                match ev {
                    ClusterEvent::Primary(ev) => {
                        self.log.push(format!("{ev:?}"));
                        self.events.push((Instant::now(), ev));
                    }
                    ClusterEvent::Supervisor(ev) => {
                        self.log.push(format!("SUP {ev:?}"));
                        self.sup_events.push((Instant::now(), ev));
                    }
                }
            }
        }
    }

    pub fn count(&self, f: impl Fn(&SupervisorEvent) -> bool) -> usize {
        self.sup_events.iter().filter(|(_, e)| f(e)).count()
    }

    /// The first reload report seen (panics if there is none).
    pub fn reload_report(&self) -> ReloadReport {
        self.sup_events
            .iter()
            .find_map(|(_, e)| match e {
                SupervisorEvent::Reload(r) => Some(r.clone()),
                _ => None,
            })
            .expect("a reload report")
    }

    pub fn listening(&self) -> usize {
        let p = self.c.primary();
        p.worker_ids()
            .iter()
            .filter(|&&id| {
                p.worker(id)
                    .is_some_and(|w| w.state == corral_core::WorkerState::Listening)
            })
            .count()
    }

    pub fn port(&self) -> u16 {
        self.events
            .iter()
            .find_map(|(_, e)| match e {
                Event::Listening {
                    addr: BoundAddr::Tcp(a),
                    ..
                } => Some(a.port()),
                _ => None,
            })
            .expect("a TCP Listening event")
    }

    /// How many primary events match `f`.
    pub fn count_primary(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| f(e)).count()
    }

    /// Workers that exited after a disconnect the primary asked for (a drain).
    pub fn drained(&self) -> usize {
        self.count_primary(|e| {
            matches!(
                e,
                Event::Exit {
                    exited_after_disconnect: true,
                    ..
                }
            )
        })
    }

    /// The `clean` flag of the primary's `ShutdownComplete`, once it came.
    pub fn shutdown_complete(&self) -> Option<bool> {
        self.events.iter().find_map(|(_, e)| match e {
            Event::ShutdownComplete { clean } => Some(*clean),
            _ => None,
        })
    }

    /// Some `Event::Error`'s message contains `text`.
    pub fn error_containing(&self, text: &str) -> bool {
        self.events
            .iter()
            .any(|(_, e)| matches!(e, Event::Error { error, .. } if error.message().contains(text)))
    }

    /// Serves requests from a client thread while the loop runs; returns (sent, failed).
    pub fn load_while(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl FnMut(&Sup) -> bool,
    ) -> (usize, usize) {
        let port = self.port();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let client = std::thread::spawn(move || {
            let (mut sent, mut failed) = (0, 0);
            let t0 = Instant::now();
            // Bounded: stops when told, or after 30 s / 100k requests at the most.
            while !st.load(Ordering::Acquire)
                && t0.elapsed() < Duration::from_secs(30)
                && sent < 100_000
            {
                sent += 1;
                if let Err(e) = request(port) {
                    failed += 1;
                    eprintln!("request {sent} failed: {e}");
                }
            }
            (sent, failed)
        });
        self.run_until(what, timeout, done);
        // A little more load after the change, then stop.
        let until = Instant::now() + Duration::from_millis(200);
        self.run_until("tail of the load", Duration::from_secs(5), |_| {
            Instant::now() >= until
        });
        stop.store(true, Ordering::Release);
        while !client.is_finished() {
            self.run_until("client end", Duration::from_secs(5), |_| true);
            self.c.dispatch(Some(Duration::from_millis(5))).unwrap();
        }
        client.join().unwrap()
    }
}

pub fn quick_restart() -> RestartOptions {
    RestartOptions {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        factor: 2.0,
        jitter: 0.0,
        reset_after: Duration::from_secs(30),
        crash_loop_exits: 100,
        crash_loop_window: Duration::from_secs(60),
        no_restart_exit_codes: vec![78],
    }
}

pub fn opts(workers: usize) -> SupervisorOptions {
    SupervisorOptions {
        workers,
        restart: quick_restart(),
        shutdown_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}
