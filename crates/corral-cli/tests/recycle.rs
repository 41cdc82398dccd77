//! RSS recycling through the command: `--recycle-max-rss` (supervise()'s recycle.maxRss)
//! replaces a worker whose memory grows past the limit (tests/programs/listen_fds_server.py
//! keeping 512 KiB per request) by a fresh one started first, under a bounded client loop
//! that sees no failed request.

mod util;
use std::time::{Duration, Instant};
use util::*;

const LIMIT: u64 = 48 << 20;

/// Waits until a worker other than the recycled `first` answers on `port`, and `first` has
/// drained and exited 0.
fn replaced(c: &Corral, port: u16, first: i64) {
    wait_for(
        "a worker other than the recycled one answering",
        Duration::from_secs(15),
        || {
            let body = get(port, Duration::from_secs(5)).ok()?;
            let pid = pid_of(&body);
            (pid != first).then_some(pid)
        },
    );
    c.wait_line(
        &format!("(pid {first}) exited with code 0"),
        Duration::from_secs(15),
    );
}

#[test]
fn a_worker_growing_past_max_rss_is_recycled_without_failed_requests() {
    let py = server_py();
    let c = Corral::run(
        &format!("--workers 1 --listen 127.0.0.1:0 --recycle-max-rss {LIMIT} --ready-delay 200ms"),
        &[&python(), &py],
        // 512 KiB a request, 10 ms each: at most ~50 MB/s of growth, so the engine's check
        // (every second) finds it not far past the limit.
        &[("SERVER_GROW_KB", "512"), ("SERVER_DELAY_MS", "10")],
    );
    let port = c.port();
    let first = c.wait_ready(1, Duration::from_secs(15))[0];
    let rss0 = c.status()["workers"][0]["rss_bytes"].as_u64().unwrap();
    assert!(
        rss0 < LIMIT / 2,
        "the worker starts well below the limit: {rss0} bytes"
    );
    let t0 = Instant::now();
    let load = Load::start(port, 2);
    let line = c.wait_line("recycling worker 1", Duration::from_secs(30));
    let took = t0.elapsed();
    // The new worker serves, the old one drained and exited.
    replaced(&c, port, first);
    let (ok, errors) = load.finish();
    eprintln!(
        "recycle at {LIMIT} bytes: {line:?} after {took:?} of load; {ok} requests ok, {} failed",
        errors.len()
    );
    assert!(line.contains(&format!("> {LIMIT}")), "{line}");
    assert_clean(ok, &errors, 20);
    let st = c.status();
    assert!(
        st["restarts_by_cause"]["recycle"].as_u64() >= Some(1),
        "{st}"
    );
    assert_ne!(st["workers"][0]["pid"], first, "{st}");
    let mut c = c;
    c.stop(Duration::from_secs(15));
}

/// The started pid's own resident memory, `VmRSS` of `/proc/PID/status`.
fn own_rss(pid: i64) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[test]
fn a_worker_whose_forked_child_grows_past_max_rss_is_recycled_without_failed_requests() {
    // The first worker forks a child at start that, from the first request on, keeps
    // 256 KiB more every 10 ms (at most ~25 MB/s): the started pid stays small, its tree
    // passes the limit in about 2 s. Its replacement has no such child.
    let py = server_py();
    let dir = TempDir::new("tree-rss");
    let once = dir.path().join("grew");
    let once = once.display().to_string();
    let c = Corral::run_in(
        dir,
        &format!("--workers 1 --listen 127.0.0.1:0 --recycle-max-rss {LIMIT} --ready-delay 200ms"),
        &[&python(), &py],
        &[
            ("SERVER_CHILD_GROW_KB", "256"),
            ("SERVER_CHILD_GROW_ONCE", &once),
        ],
    );
    let port = c.port();
    let first = c.wait_ready(1, Duration::from_secs(15))[0];
    let load = Load::start(port, 2);
    // `status` shows the tree: well above the started pid's own RSS once the child grew.
    let (tree, own) = wait_for(
        "status rss_bytes 8 MiB above the worker pid's own RSS (its child growing)",
        Duration::from_secs(15),
        || {
            let st = c.status();
            let w = &st["workers"][0];
            assert_eq!(w["pid"].as_i64(), Some(first), "recycled before seen: {st}");
            let tree = w["rss_bytes"].as_u64()?;
            let own = own_rss(first)?;
            (tree > own + (8 << 20)).then_some((tree, own))
        },
    );
    let line = c.wait_line("recycling worker 1", Duration::from_secs(30));
    let own_then = own_rss(first);
    replaced(&c, port, first);
    let (ok, errors) = load.finish();
    eprintln!(
        "tree recycle at {LIMIT} bytes: status showed {tree} bytes for the tree while pid \
         {first} had {own}; {line:?} (pid's own RSS then: {own_then:?}); {ok} requests ok, {} \
         failed",
        errors.len()
    );
    assert!(line.contains(&format!("> {LIMIT}")), "{line}");
    if let Some(own_then) = own_then {
        assert!(
            own_then < LIMIT / 2,
            "the started pid itself stayed small ({own_then} bytes): the tree passed the limit"
        );
    }
    assert_clean(ok, &errors, 20);
    let st = c.status();
    assert!(
        st["restarts_by_cause"]["recycle"].as_u64() >= Some(1),
        "{st}"
    );
    let mut c = c;
    c.stop(Duration::from_secs(15));
}
