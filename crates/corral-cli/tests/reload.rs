//! Rolling reload of programs that know nothing of corral: SIGHUP or `corral reload` under a
//! bounded load loop fails no request; READY=1 on NOTIFY_SOCKET gates each step.

mod util;
use std::time::{Duration, Instant};
use util::*;

#[test]
fn sighup_reload_under_load_fails_no_request_and_replaces_every_worker() {
    let py = server_py();
    let c = Corral::run(
        "--workers 2 --listen 127.0.0.1:0 --reload-wait-ready --reload-probation 200ms",
        &[&python(), &py],
        &[("SERVER_NOTIFY", "ready"), ("SERVER_DELAY_MS", "5")],
    );
    let port = c.port();
    let before = c.wait_ready(2, Duration::from_secs(15));
    let load = Load::start(port, 2);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    c.signal("HUP");
    let done = c.wait_line("corral: reload", Duration::from_secs(30));
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, errors) = load.finish();
    let failed = errors.len();
    eprintln!("SIGHUP reload of 2 workers under load: {ok} requests ok, {failed} failed, {took:?}");
    assert!(
        done.contains("reload done: 2 workers replaced"),
        "{}",
        c.stderr()
    );
    assert_clean(ok, &errors, 5);
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
    let c = Corral::run(
        "--workers 2 --listen 127.0.0.1:0 --reload-wait-ready --reload-probation 0",
        &[&python(), &py],
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

/// The same with Node: `http.createServer().listen({ fd: 3 })`, closing its server on
/// SIGTERM; a worker is ready 500 ms after its start (it does not speak sd_notify).
#[test]
fn a_node_server_on_fd_3_reloads_under_load_without_failures() {
    if which_node().is_none() {
        panic!("node is not installed: this test needs it (apt-get install nodejs)");
    }
    let js = program("node_server.js");
    let c = Corral::run(
        "--workers 2 --listen 127.0.0.1:0 --ready-delay 500ms --reload-probation 100ms",
        &["node", &js],
        &[],
    );
    let port = c.port();
    let before = c.wait_ready(2, Duration::from_secs(20));
    let load = Load::start(port, 2);
    std::thread::sleep(Duration::from_millis(300));
    let (code, _, err) = c.ctl("reload", &[]);
    assert_eq!(code, 0, "{err}");
    let done = c.wait_line("corral: reload", Duration::from_secs(30));
    // New Node workers take a while to boot on a busy machine: the load runs on after them.
    std::thread::sleep(Duration::from_millis(1000));
    let (ok, errors) = load.finish();
    eprintln!(
        "corral reload of 2 Node workers under load: {ok} ok, {} failed",
        errors.len()
    );
    assert!(
        done.contains("reload done: 2 workers replaced"),
        "{}",
        c.stderr()
    );
    assert_clean(ok, &errors, 5);
    let after = c.wait_ready(2, Duration::from_secs(10));
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
}

fn which_node() -> Option<()> {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(drop)
}

/// Kubernetes: `/ready` on the metrics listener is 200 only while the pool is at strength
/// and not mid-reload.
#[test]
fn ready_on_the_metrics_listener_is_503_during_a_reload_and_200_at_strength() {
    let py = server_py();
    let c = Corral::run(
        "--workers 2 --reload-wait-ready --reload-probation 0 --listen 127.0.0.1:0 \
         --metrics 127.0.0.1:0",
        &[&python(), &py],
        &[
            ("SERVER_NOTIFY", "ready"),
            ("SERVER_READY_AFTER_MS", "600"),
            ("LISTEN_FDS", "0"),
        ],
    );
    let addr = c.metrics_addr();
    let probe = || get_raw(addr, "/ready");
    wait_for("/ready 200 at strength", Duration::from_secs(15), || {
        probe().starts_with("HTTP/1.1 200").then_some(())
    });
    let (code, _, err) = c.ctl("reload", &[]);
    assert_eq!(code, 0, "{err}");
    let during = probe();
    assert!(
        during.starts_with("HTTP/1.1 503")
            && during.contains("not ready: a rolling reload is running"),
        "{during}"
    );
    c.wait_line("corral: reload done", Duration::from_secs(30));
    wait_for(
        "/ready 200 after the reload",
        Duration::from_secs(5),
        || probe().starts_with("HTTP/1.1 200").then_some(()),
    );
}
