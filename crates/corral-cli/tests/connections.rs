//! `corral status` counts each worker's open connections from the kernel (the worker is a
//! foreign program: tests/programs/keepalive_server.py, LISTEN_FDS only): idle keep-alive
//! connections held by a client show in the table and in `--json`, on TCP and Unix listeners,
//! and a pre-forking worker's row counts its children's.

mod util;
use std::time::Duration;
use util::*;

fn keepalive_py() -> String {
    program("keepalive_server.py")
}

/// Waits until the worker row shows `n` connections; returns the status.
fn wait_conns(c: &Corral, n: u64) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_for(
        &format!("status to show {n} connections for the only worker"),
        Duration::from_secs(10),
        || {
            last = c.status();
            (last["workers"][0]["connections"] == n).then(|| last.clone())
        },
    )
}

#[test]
fn status_shows_the_idle_keep_alive_connections_a_worker_holds() {
    let dir = TempDir::new("conns");
    let sock = dir.path().join("app.sock");
    let unix = format!("unix:{}", sock.display());
    let py = keepalive_py();
    let c = Corral::start_in(
        dir,
        CORRAL,
        &[
            "run",
            "--workers",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--listen",
            &unix,
            "--ready-delay",
            "100ms",
            "--",
            &python(),
            &py,
        ],
        &[],
    );
    let port = c.port();
    let pids = c.wait_ready(1, Duration::from_secs(15));
    let st = wait_conns(&c, 0);
    assert_eq!(st["workers"][0]["pid"], pids[0]);

    // Three clients, each served once and then idle on its open connection.
    let mut held: Vec<_> = (0..3).map(|_| keepalive_tcp(port)).collect();
    for s in &mut held {
        assert_eq!(pid_of(&keepalive_request(s)), pids[0]);
    }
    wait_conns(&c, 3);
    let (code, table, err) = c.ctl("status", &[]);
    assert_eq!(code, 0, "{err}");
    let header = table.lines().find(|l| l.contains("slot")).unwrap();
    let row = table.lines().last().unwrap();
    let col = header.split_whitespace().position(|h| h == "conns");
    assert_eq!(
        col.and_then(|i| row.split_whitespace().nth(i)),
        Some("3"),
        "the table's conns column:\n{table}"
    );

    // Two more on the Unix listener: 5.
    let mut unix_held: Vec<_> = (0..2)
        .map(|_| {
            let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s
        })
        .collect();
    for s in &mut unix_held {
        keepalive_request(s);
    }
    wait_conns(&c, 5);

    // Closed by the client: gone from the count once the server closed its end too.
    held.truncate(1);
    unix_held.clear();
    wait_conns(&c, 1);
    drop(held);
    wait_conns(&c, 0);
    let mut c = c;
    c.stop(Duration::from_secs(15));
}

/// uvicorn `--workers` and gunicorn fork: the row of the pid corral started counts the
/// connections its children hold.
#[test]
fn a_pre_forking_worker_counts_the_connections_of_its_children() {
    let py = keepalive_py();
    let c = Corral::run(
        "--workers 1 --listen 127.0.0.1:0 --ready-delay 100ms",
        &[&python(), &py],
        &[("SERVER_FORK", "2")],
    );
    let port = c.port();
    let pids = c.wait_ready(1, Duration::from_secs(15));
    let mut held: Vec<_> = (0..3).map(|_| keepalive_tcp(port)).collect();
    let mut servers = std::collections::BTreeSet::new();
    for s in &mut held {
        servers.insert(pid_of(&keepalive_request(s)));
    }
    assert!(
        !servers.contains(&pids[0]),
        "children answer, not the pid corral started: {servers:?} vs {pids:?}"
    );
    let st = wait_conns(&c, 3);
    assert_eq!(st["workers"].as_array().unwrap().len(), 1, "{st}");
    drop(held);
    wait_conns(&c, 0);
    let mut c = c;
    c.stop(Duration::from_secs(15));
}

/// The metrics listener carries the same count, collected at scrape time:
/// `corral_worker_connections{worker="ID",pid="PID"} N`.
#[test]
fn the_metrics_endpoint_has_a_connections_gauge_per_worker() {
    let py = keepalive_py();
    let c = Corral::run(
        "--workers 1 --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --ready-delay 100ms",
        &[&python(), &py],
        &[],
    );
    let addr = c.metrics_addr();
    let scrape = || get_raw(addr, "/metrics");
    let port = c.port();
    let pids = c.wait_ready(1, Duration::from_secs(15));
    let st = c.status();
    let id = st["workers"][0]["id"].as_u64().unwrap();
    let row = format!(
        "corral_worker_connections{{worker=\"{id}\",pid=\"{}\"}} ",
        pids[0]
    );
    let wait_gauge = |n: u64| {
        let mut last = String::new();
        wait_for(
            &format!("the metrics to show {row}{n}"),
            Duration::from_secs(10),
            || {
                last = scrape();
                last.lines().any(|l| l == format!("{row}{n}")).then_some(())
            },
        );
        last
    };
    let text = wait_gauge(0);
    assert!(
        text.contains("# TYPE corral_worker_connections gauge\n"),
        "{text}"
    );
    // Three idle keep-alive connections, served once each.
    let mut held: Vec<_> = (0..3).map(|_| keepalive_tcp(port)).collect();
    for s in &mut held {
        assert_eq!(pid_of(&keepalive_request(s)), pids[0]);
    }
    wait_gauge(3);
    drop(held);
    wait_gauge(0);
    let mut c = c;
    c.stop(Duration::from_secs(15));
}
