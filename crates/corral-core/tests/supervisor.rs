//! The supervisor with real workers: backoff gaps, the crash-loop breaker, no-restart codes,
//! reload under load with zero failed requests, rollback, the watchdog, recycling, scaling,
//! shutdown and the metrics endpoint.

mod util;
use corral_core::supervisor::Metrics;
use corral_core::supervisor::{
    Cause, HeartbeatOptions, RecycleOptions, ReloadOptions, ReloadReport, RestartOptions,
};
use corral_core::{
    Cluster, ClusterEvent, Primary, PrimaryOptions, SpawnSpec, StdioSpec, Supervisor,
    SupervisorEvent, SupervisorOptions,
};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use util::http::{wait_closed, SlowClient};
use util::{request, worker_of, FIXTURE};

/// What each slot runs: argv for the fixture (a test may change it while running).
type Plan = Arc<Mutex<Box<dyn Fn(usize) -> Vec<String> + Send>>>;

struct Sup {
    c: Cluster,
    log: Vec<String>,
    sup_events: Vec<(Instant, SupervisorEvent)>,
    events: Vec<(Instant, String)>,
}

fn plan(f: impl Fn(usize) -> Vec<String> + Send + 'static) -> Plan {
    Arc::new(Mutex::new(Box::new(f)))
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn start(plan: Plan, opts: SupervisorOptions, env: &[(&str, &str)]) -> Sup {
    util::no_policy_override();
    let p = Primary::new(PrimaryOptions::default()).unwrap();
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
    fn metrics(&self) -> Metrics {
        self.c.supervisor().unwrap().metrics(self.c.primary())
    }

    /// Runs the loop until `done` holds (checked after every event), or panics at `timeout`.
    fn run_until(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&Sup) -> bool) {
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
                        self.events.push((Instant::now(), format!("{ev:?}")));
                    }
                    ClusterEvent::Supervisor(ev) => {
                        self.log.push(format!("SUP {ev:?}"));
                        self.sup_events.push((Instant::now(), ev));
                    }
                }
            }
        }
    }

    fn count(&self, f: impl Fn(&SupervisorEvent) -> bool) -> usize {
        self.sup_events.iter().filter(|(_, e)| f(e)).count()
    }

    /// The first reload report seen (panics if there is none).
    fn reload_report(&self) -> ReloadReport {
        self.sup_events
            .iter()
            .find_map(|(_, e)| match e {
                SupervisorEvent::Reload(r) => Some(r.clone()),
                _ => None,
            })
            .expect("a reload report")
    }

    fn listening(&self) -> usize {
        let p = self.c.primary();
        p.worker_ids()
            .iter()
            .filter(|&&id| {
                p.worker(id)
                    .is_some_and(|w| w.state == corral_core::WorkerState::Listening)
            })
            .count()
    }

    fn port(&self) -> u16 {
        self.log
            .iter()
            .find_map(|l| {
                l.split("addr: Tcp(127.0.0.1:")
                    .nth(1)
                    .and_then(|r| r.split(')').next())
                    .and_then(|p| p.parse().ok())
            })
            .expect("a Listening event")
    }

    /// Serves requests from a client thread while the loop runs; returns (sent, failed).
    fn load_while(
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

fn quick_restart() -> RestartOptions {
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

fn opts(workers: usize) -> SupervisorOptions {
    SupervisorOptions {
        workers,
        restart: quick_restart(),
        shutdown_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

#[test]
fn backoff_gaps_grow_then_cap() {
    let mut s = start(plan(|_| args(&["exit", "1"])), opts(1), &[]);
    s.run_until("5 restarts", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Restart { .. })) >= 5
    });
    let delays: Vec<u128> = s
        .sup_events
        .iter()
        .filter_map(|(_, e)| match e {
            SupervisorEvent::Restart {
                delay,
                cause: Cause::Boot(st),
                ..
            } => {
                assert_eq!(st.code, Some(1));
                Some(delay.as_millis())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        &delays[..5],
        &[50, 100, 200, 400, 400],
        "boot failures back off: {delays:?}"
    );
    // The measured gaps between exits and restarts are at least the delays.
    let exits: Vec<Instant> = s
        .events
        .iter()
        .filter(|(_, e)| e.starts_with("Exit"))
        .map(|(t, _)| *t)
        .collect();
    let restarts: Vec<Instant> = s
        .sup_events
        .iter()
        .filter(|(_, e)| matches!(e, SupervisorEvent::Restart { .. }))
        .map(|(t, _)| *t)
        .collect();
    for (i, (r, d)) in restarts.iter().zip(&delays).enumerate().take(5) {
        let gap = r.duration_since(exits[i]).as_millis();
        eprintln!("restart {i}: delay {d} ms, measured gap {gap} ms");
        assert!(
            gap + 5 >= *d,
            "restart {i} came after {gap} ms, before its {d} ms delay"
        );
    }
}

#[test]
fn stable_runs_reset_the_backoff() {
    let o = SupervisorOptions {
        restart: RestartOptions {
            reset_after: Duration::from_millis(200),
            ..quick_restart()
        },
        ..opts(1)
    };
    let mut s = start(
        plan(|_| args(&["crash-after", "300", "127.0.0.1:0"])),
        o,
        &[],
    );
    s.run_until("3 restarts", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Restart { .. })) >= 3
    });
    for (_, e) in &s.sup_events {
        if let SupervisorEvent::Restart { delay, cause, .. } = e {
            assert_eq!(delay.as_millis(), 50, "each run was stable: initial delay");
            assert!(
                matches!(cause, Cause::Crash(_)),
                "it crashed after listening: {cause:?}"
            );
        }
    }
}

#[test]
fn crash_loop_trips_the_breaker_while_healthy_workers_serve() {
    let o = SupervisorOptions {
        restart: RestartOptions {
            crash_loop_exits: 3,
            max_delay: Duration::from_secs(5),
            ..quick_restart()
        },
        ..opts(2)
    };
    let mut s = start(
        plan(|slot| {
            if slot == 0 {
                args(&["serve", "127.0.0.1:0"])
            } else {
                args(&["exit", "3"])
            }
        }),
        o,
        &[],
    );
    s.run_until("the crash loop", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::CrashLoop { .. })) == 1
    });
    let (slot, exits) = s
        .sup_events
        .iter()
        .find_map(|(_, e)| match e {
            SupervisorEvent::CrashLoop { slot, exits } => Some((*slot, exits.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(slot, 1);
    assert_eq!(exits.len(), 3);
    assert!(exits.iter().all(|e| e.code == Some(3)));
    // Slow retries now (the max delay), and slot 0 keeps serving.
    let restarts_before = s.count(|e| matches!(e, SupervisorEvent::Restart { .. }));
    let (sent, failed) = s.load_while("serving during the loop", Duration::from_secs(10), |s| {
        s.sup_events
            .last()
            .is_some_and(|(t, _)| t.elapsed() > Duration::from_millis(800))
    });
    assert!(sent > 10 && failed == 0, "sent {sent}, failed {failed}");
    assert_eq!(
        s.count(|e| matches!(e, SupervisorEvent::Restart { .. })),
        restarts_before,
        "no fast respawning"
    );
    assert_eq!(s.metrics().crash_looping_slots, vec![1]);
}

#[test]
fn no_restart_exit_codes_are_honoured() {
    let mut s = start(plan(|_| args(&["exit", "78"])), opts(1), &[]);
    s.run_until("NoRestart", Duration::from_secs(10), |s| {
        s.count(|e| matches!(e, SupervisorEvent::NoRestart { .. })) == 1
    });
    let t = Instant::now() + Duration::from_millis(500);
    s.run_until("quiet", Duration::from_secs(5), |_| Instant::now() >= t);
    assert_eq!(
        s.count(|e| matches!(e, SupervisorEvent::Restart { .. })),
        0,
        "{:#?}",
        s.log
    );
    assert!(s.c.primary().worker_ids().is_empty());
}

#[test]
fn reload_under_load_replaces_every_worker_with_zero_failed_requests() {
    let o = SupervisorOptions {
        reload: ReloadOptions {
            probation: Duration::from_millis(200),
            ..Default::default()
        },
        ..opts(2)
    };
    let mut s = start(plan(|_| args(&["serve", "127.0.0.1:0"])), o, &[]);
    s.run_until("2 listening", Duration::from_secs(10), |s| {
        s.listening() == 2
    });
    let before = s.c.primary().worker_ids();
    s.c.with_supervisor(|sv, p| sv.reload(p)).unwrap();
    assert!(s
        .c
        .with_supervisor(|sv, p| sv.reload(p))
        .unwrap_err()
        .message()
        .contains("already in progress"));
    let (sent, failed) = s.load_while("the reload report", Duration::from_secs(30), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Reload(_))) == 1
    });
    let report = s.reload_report();
    eprintln!("reload: {report:?}; requests sent {sent}, failed {failed}");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.replaced, 2);
    assert_eq!(failed, 0, "requests failed during the reload ({sent} sent)");
    assert!(sent > 50, "the load ran during the reload ({sent} sent)");
    let after = s.c.primary().worker_ids();
    assert!(
        after.iter().all(|id| !before.contains(id)),
        "every worker replaced: {before:?} -> {after:?}"
    );
    let port = s.port();
    let t = std::thread::spawn(move || worker_of(&request(port).unwrap()));
    while !t.is_finished() {
        s.run_until("request", Duration::from_secs(5), |_| true);
        s.c.dispatch(Some(Duration::from_millis(5))).unwrap();
    }
    assert!(!before.contains(&t.join().unwrap()));
}

#[test]
fn a_reload_whose_new_workers_crash_rolls_back() {
    let broken = Arc::new(AtomicBool::new(false));
    let b2 = broken.clone();
    let o = SupervisorOptions {
        reload: ReloadOptions {
            probation: Duration::from_millis(300),
            ..Default::default()
        },
        ..opts(2)
    };
    let mut s = start(
        plan(move |_| {
            if b2.load(Ordering::Acquire) {
                args(&["crash-after", "100", "127.0.0.1:0"])
            } else {
                args(&["serve", "127.0.0.1:0"])
            }
        }),
        o,
        &[],
    );
    s.run_until("2 listening", Duration::from_secs(10), |s| {
        s.listening() == 2
    });
    let before = s.c.primary().worker_ids();
    broken.store(true, Ordering::Release); // the "new code" crashes soon after it listens
    s.c.with_supervisor(|sv, p| sv.reload(p)).unwrap();
    let (_, failed) = s.load_while("the reload report", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Reload(_))) == 1
    });
    let report = s.reload_report();
    eprintln!("{report:?}");
    assert!(!report.ok);
    assert_eq!(report.replaced, 0);
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("exited with code 1"),
        "{report:?}"
    );
    assert_eq!(failed, 0, "the old generation kept serving");
    let t = Instant::now() + Duration::from_millis(300);
    s.run_until("settle", Duration::from_secs(5), |_| Instant::now() >= t);
    let now: Vec<u64> = s.c.primary().worker_ids();
    assert_eq!(
        now, before,
        "the old workers still serve, the new one is gone"
    );
}

#[test]
fn a_worker_that_stops_heartbeating_is_replaced() {
    let o = SupervisorOptions {
        heartbeat: Some(HeartbeatOptions {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(300),
        }),
        ..opts(1)
    };
    let mut s = start(
        plan(|_| args(&["hang-after", "400", "127.0.0.1:0"])),
        o,
        &[("CORRAL_FIXTURE_HEARTBEAT_MS", "50")],
    );
    let t0 = Instant::now();
    s.run_until("a hang", Duration::from_secs(10), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Hang { .. })) == 1
    });
    let detected = t0.elapsed();
    let silent = s
        .sup_events
        .iter()
        .find_map(|(_, e)| {
            if let SupervisorEvent::Hang { silent_for, .. } = e {
                Some(*silent_for)
            } else {
                None
            }
        })
        .unwrap();
    eprintln!("hang detected {detected:?} after start; silent for {silent:?}");
    assert!(
        silent > Duration::from_millis(300) && silent < Duration::from_millis(1500),
        "{silent:?}"
    );
    s.run_until("the replacement", Duration::from_secs(10), |s| {
        s.count(|e| {
            matches!(
                e,
                SupervisorEvent::Restart {
                    cause: Cause::Hang,
                    ..
                }
            )
        }) == 1
    });
}

#[test]
fn a_worker_whose_channel_broke_is_stopped_and_replaced() {
    // Slot 0's first worker writes garbage on its channel and ignores the cut; it used to stay
    // up for good, unreplaced, shown as ready.
    let first = Arc::new(AtomicBool::new(true));
    let f = first.clone();
    let mut s = start(
        plan(move |_| {
            if f.swap(false, Ordering::SeqCst) {
                args(&["garbage-stay", "127.0.0.1:0"])
            } else {
                args(&["serve", "127.0.0.1:0"])
            }
        }),
        opts(1),
        &[],
    );
    s.run_until("the replacement", Duration::from_secs(10), |s| {
        s.count(|e| {
            matches!(
                e,
                SupervisorEvent::Restart {
                    cause: Cause::Channel,
                    ..
                }
            )
        }) == 1
    });
    assert!(
        s.log.iter().any(|l| l.contains("malformed frame")),
        "{:#?}",
        s.log
    );
    s.run_until("the replacement listening", Duration::from_secs(10), |s| {
        s.metrics().workers.iter().any(|w| w.state == "ready")
    });
    let m = s.metrics();
    assert_eq!(m.workers.len(), 1, "{m:?}");
    assert!(
        m.restarts_by_cause.contains(&("channel".to_string(), 1)),
        "{m:?}"
    );
}

#[test]
fn a_worker_over_its_rss_limit_is_recycled_without_a_failed_request() {
    let o = SupervisorOptions {
        recycle: RecycleOptions {
            max_rss: Some(48 << 20),
            ..Default::default()
        },
        ..opts(2)
    };
    let first = Arc::new(AtomicBool::new(true));
    let f2 = first.clone();
    // The first worker of slot 0 bloats; its replacement does not.
    let mut s = start(
        plan(move |slot| {
            if slot == 0 && f2.swap(false, Ordering::AcqRel) {
                args(&["rss", "64", "127.0.0.1:0"])
            } else {
                args(&["serve", "127.0.0.1:0"])
            }
        }),
        o,
        &[],
    );
    s.run_until("2 listening", Duration::from_secs(10), |s| {
        s.listening() >= 2
    });
    let (sent, failed) = s.load_while("the recycle", Duration::from_secs(20), |s| {
        s.count(|e| matches!(e, SupervisorEvent::Recycle { .. })) == 1
            && s.log
                .iter()
                .any(|l| l.contains("exited_after_disconnect: true"))
    });
    let reason = s
        .sup_events
        .iter()
        .find_map(|(_, e)| {
            if let SupervisorEvent::Recycle {
                reason, slot: 0, ..
            } = e
            {
                Some(reason.clone())
            } else {
                None
            }
        })
        .unwrap();
    eprintln!("recycled: {reason}; requests sent {sent}, failed {failed}");
    assert!(reason.starts_with("rss "), "{reason}");
    assert_eq!(failed, 0);
}

#[test]
fn a_worker_over_its_connection_limit_is_recycled() {
    let o = SupervisorOptions {
        recycle: RecycleOptions {
            max_connections: Some(40),
            jitter: 0.0,
            ..Default::default()
        },
        ..opts(1)
    };
    let mut s = start(plan(|_| args(&["serve", "127.0.0.1:0"])), o, &[]);
    s.run_until("listening", Duration::from_secs(10), |s| s.listening() == 1);
    let (sent, failed) = s.load_while("the recycle", Duration::from_secs(20), |s| {
        s.log
            .iter()
            .any(|l| l.contains("exited_after_disconnect: true"))
    });
    assert_eq!(failed, 0, "sent {sent}");
    assert!(s.count(|e| matches!(e, SupervisorEvent::Recycle { reason, .. } if reason.starts_with("connections "))) >= 1);
}

#[test]
fn scale_up_and_down_drains_gracefully() {
    let mut s = start(plan(|_| args(&["serve", "127.0.0.1:0"])), opts(1), &[]);
    s.run_until("1 listening", Duration::from_secs(10), |s| {
        s.listening() == 1
    });
    s.c.with_supervisor(|sv, p| sv.scale(p, 3)).unwrap();
    s.run_until("3 listening", Duration::from_secs(10), |s| {
        s.listening() == 3
    });
    s.c.with_supervisor(|sv, p| sv.scale(p, 1)).unwrap();
    let (sent, failed) = s.load_while("2 drained", Duration::from_secs(10), |s| {
        s.log
            .iter()
            .filter(|l| l.contains("exited_after_disconnect: true"))
            .count()
            == 2
    });
    assert_eq!(failed, 0, "sent {sent}");
    assert_eq!(s.c.primary().worker_ids().len(), 1);
    assert_eq!(
        s.count(|e| matches!(e, SupervisorEvent::Restart { .. })),
        0,
        "scaled-down workers are not restarted"
    );
    assert!(s
        .c
        .with_supervisor(|sv, p| sv.scale(p, 0))
        .unwrap_err()
        .message()
        .contains("workers"));
}

#[test]
fn shutdown_drains_and_stops_restarting() {
    let mut s = start(plan(|_| args(&["serve", "127.0.0.1:0"])), opts(2), &[]);
    s.run_until("2 listening", Duration::from_secs(10), |s| {
        s.listening() == 2
    });
    s.c.with_supervisor(|sv, p| sv.shutdown(p)).unwrap();
    s.run_until("shutdown", Duration::from_secs(10), |s| {
        s.log.iter().any(|l| l.contains("ShutdownComplete"))
    });
    assert!(
        s.log
            .iter()
            .any(|l| l == "ShutdownComplete { clean: true }"),
        "{:#?}",
        s.log
    );
    assert_eq!(s.count(|e| matches!(e, SupervisorEvent::Restart { .. })), 0);
}

#[test]
fn invalid_options_name_the_option() {
    let mut p = Primary::new(PrimaryOptions::default()).unwrap();
    for (o, name) in [
        (
            SupervisorOptions {
                workers: 0,
                ..opts(1)
            },
            "workers",
        ),
        (
            SupervisorOptions {
                restart: RestartOptions {
                    factor: 0.5,
                    ..quick_restart()
                },
                ..opts(1)
            },
            "restart.factor",
        ),
        (
            SupervisorOptions {
                restart: RestartOptions {
                    jitter: 2.0,
                    ..quick_restart()
                },
                ..opts(1)
            },
            "restart.jitter",
        ),
        (
            SupervisorOptions {
                reload: ReloadOptions {
                    batch: 0,
                    ..Default::default()
                },
                ..opts(1)
            },
            "reload.batch",
        ),
    ] {
        let e = Supervisor::start(&mut p, o, Box::new(|_, _| unreachable!())).unwrap_err();
        assert!(e.message().starts_with(name), "{e}");
    }
}

#[test]
fn the_metrics_endpoint_serves_prometheus_text() {
    let o = SupervisorOptions {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..opts(2)
    };
    let mut s = start(plan(|_| args(&["serve", "127.0.0.1:0"])), o, &[]);
    s.run_until("2 listening", Duration::from_secs(10), |s| {
        s.listening() == 2
    });
    let t = Instant::now() + Duration::from_millis(700);
    s.run_until("a publish", Duration::from_secs(5), |_| Instant::now() >= t);
    let addr = s.c.supervisor().unwrap().metrics_addr().unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.contains("text/plain; version=0.0.4"),
        "{head}"
    );
    let mut families = std::collections::BTreeSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            families.insert(it.next().unwrap().to_string());
            assert!(matches!(it.next(), Some("gauge" | "counter")), "{line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        // name{label="v",...} value
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap();
        assert!(families.contains(name), "{name} has no TYPE line");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
        if let Some(labels) = series.strip_prefix(name).and_then(|l| l.strip_prefix('{')) {
            let labels = labels.strip_suffix('}').unwrap();
            for kv in labels.split(',') {
                let (k, v) = kv.split_once('=').unwrap();
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                assert!(v.starts_with('"') && v.ends_with('"'), "{kv}");
            }
        }
    }
    assert!(body.contains("corral_worker_info{slot=\"0\""), "{body}");
    assert!(body.contains("corral_worker_info{slot=\"1\""), "{body}");
    assert!(
        body.contains("corral_worker_resident_memory_bytes{slot=\"0\"}"),
        "{body}"
    );
}

/// What the C ABI's corral_primary_free does: drop the supervisor (its endpoint) and the
/// primary. Idle and slow metrics clients must not make it wait (it waited 19 s before).
#[test]
fn dropping_a_supervisor_does_not_wait_on_metrics_clients() {
    let o = SupervisorOptions {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..opts(1)
    };
    let mut s = start(plan(|_| args(&["serve", "127.0.0.1:0"])), o, &[]);
    s.run_until("1 listening", Duration::from_secs(10), |s| {
        s.listening() == 1
    });
    let addr = s.c.supervisor().unwrap().metrics_addr().unwrap();
    let idle = std::net::TcpStream::connect(addr).unwrap();
    let slow = SlowClient::start(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: a-slow-client\r\n\r\n",
        Duration::from_millis(800),
    );
    let t = Instant::now() + Duration::from_millis(200);
    s.run_until("200 ms", Duration::from_secs(5), |_| Instant::now() >= t);
    let Sup { mut c, .. } = s;
    let t = Instant::now();
    drop(c.take_supervisor());
    let sup_took = t.elapsed();
    drop(c);
    let all_took = t.elapsed();
    eprintln!(
        "supervisor: drop with an idle and a slow metrics client: supervisor {sup_took:?}, \
         with the primary {all_took:?}"
    );
    assert!(
        sup_took < Duration::from_millis(200),
        "dropping the supervisor took {sup_took:?}"
    );
    assert!(
        all_took < Duration::from_secs(2),
        "dropping the supervisor and the primary took {all_took:?}"
    );
    wait_closed(&idle, "the idle metrics client", Duration::from_secs(1));
    wait_closed(
        &slow.reader,
        "the slow metrics client",
        Duration::from_secs(1),
    );
}
