//! Rolling reload of programs that know nothing of corral: SIGHUP or `corral reload` under a
//! bounded load loop fails no request; READY=1 on NOTIFY_SOCKET gates each step.

mod util;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use util::*;

/// Two clients request in a loop (each at most 5000 requests or 60 s) until `stop`.
fn load(
    port: u16,
    stop: Arc<AtomicBool>,
) -> (
    Vec<std::thread::JoinHandle<()>>,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let threads = (0..2)
        .map(|_| {
            let (stop, ok, failed, errors) =
                (stop.clone(), ok.clone(), failed.clone(), errors.clone());
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(60);
                for _ in 0..5000 {
                    if stop.load(Ordering::Relaxed) || Instant::now() > end {
                        break;
                    }
                    match get(port, Duration::from_secs(5)) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors.lock().unwrap().push(e);
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    (threads, ok, failed, errors)
}

#[test]
fn sighup_reload_under_load_fails_no_request_and_replaces_every_worker() {
    let py = server_py();
    let c = Corral::start(
        &[
            "run",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--reload-wait-ready",
            "--reload-probation",
            "200ms",
            "--",
            &python(),
            &py,
        ],
        &[("SERVER_NOTIFY", "ready"), ("SERVER_DELAY_MS", "5")],
    );
    let port = c.port();
    let before = c.wait_ready(2, Duration::from_secs(15));
    let stop = Arc::new(AtomicBool::new(false));
    let (threads, ok, failed, errors) = load(port, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    c.signal("HUP");
    let done = c.wait_line("corral: reload", Duration::from_secs(30));
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("SIGHUP reload of 2 workers under load: {ok} requests ok, {failed} failed, {took:?}");
    assert!(
        done.contains("reload done: 2 workers replaced"),
        "{}",
        c.stderr()
    );
    assert_eq!(failed, 0, "{:?}", errors.lock().unwrap());
    assert!(ok > 20, "the load loop ran ({ok} requests)");
    let after = c.wait_ready(2, Duration::from_secs(10));
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    assert_eq!(c.status()["reloads"], 1);
}

#[test]
fn corral_reload_waits_for_ready_1_of_each_new_worker_and_refuses_a_second_one() {
    let py = server_py();
    let c = Corral::start(
        &[
            "run",
            "--workers",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--reload-wait-ready",
            "--reload-probation",
            "0",
            "--",
            &python(),
            &py,
        ],
        &[("SERVER_NOTIFY", "ready"), ("SERVER_READY_AFTER_MS", "700")],
    );
    c.wait_ready(2, Duration::from_secs(15));
    let st = c.status();
    assert!(
        st["workers"][0]["status"]
            .as_str()
            .unwrap_or("")
            .starts_with("serving on 1 fds (listen0)"),
        "STATUS= of the worker is shown: {st}"
    );
    let (code, out, err) = c.ctl("reload", &[]);
    assert_eq!((code, out.trim()), (0, "reload started"), "{err}");
    let (code, _, err) = c.ctl("reload", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("already in progress"), "{err}");
    let done = c.wait_line("corral: reload done", Duration::from_secs(30));
    let ms: u64 = done
        .split(" in ")
        .nth(1)
        .and_then(|s| s.trim_end_matches(" ms").parse().ok())
        .unwrap_or_else(|| panic!("no duration in {done:?}"));
    assert!(
        ms >= 1400,
        "two workers replaced one at a time, each ready only 700 ms after start: {ms} ms"
    );
}
