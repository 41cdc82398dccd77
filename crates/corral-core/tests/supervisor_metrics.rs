//! The supervisor's metrics endpoint with real workers: Prometheus text, and dropping the
//! supervisor does not wait on idle or slow metrics clients.

mod util;

use corral_core::SupervisorOptions;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use util::http::{wait_closed, SlowClient};
use util::supervisor::{args, opts, plan, start, Sup};

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

/// A front's scrape hook (the `corral` command's connection counts): its text follows the
/// published text, it is given the published workers, and it runs at most once per
/// `SCRAPE_MIN_INTERVAL` however many clients scrape.
#[test]
fn the_scrape_hook_runs_at_scrape_time_at_most_once_per_interval() {
    use corral_core::supervisor::metrics::endpoint::{Endpoint, SCRAPE_MIN_INTERVAL};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let e = Endpoint::start("127.0.0.1:0".parse().unwrap()).unwrap();
    e.publish("corral_reloads_total 0\n".into());
    e.publish_workers(vec![(7, 4242)]);
    let calls = Arc::new(AtomicUsize::new(0));
    let n = calls.clone();
    e.set_scrape_hook(Box::new(move |workers: &[(u64, i32)]| {
        let call = n.fetch_add(1, Ordering::SeqCst) + 1;
        let mut out = String::from("# TYPE x gauge\n");
        for (id, pid) in workers {
            out.push_str(&format!("x{{worker=\"{id}\",pid=\"{pid}\"}} {call}\n"));
        }
        out
    }));
    let get = || {
        let mut c = std::net::TcpStream::connect(e.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).unwrap();
        text.split_once("\r\n\r\n").unwrap().1.to_string()
    };
    let t0 = Instant::now();
    let first = get();
    let again: Vec<String> = (0..5).map(|_| get()).collect();
    let quick = t0.elapsed() < SCRAPE_MIN_INTERVAL;
    assert_eq!(
        first,
        "corral_reloads_total 0\n# TYPE x gauge\nx{worker=\"7\",pid=\"4242\"} 1\n"
    );
    if quick {
        // Six scrapes inside one interval: one run, the others got its text.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(again.iter().all(|t| *t == first), "{again:?}");
    }
    std::thread::sleep(SCRAPE_MIN_INTERVAL + Duration::from_millis(50));
    e.publish_workers(vec![(8, 4343)]);
    let later = get();
    // A new run, given the workers published since.
    assert!(later.contains("x{worker=\"8\",pid=\"4343\"} "), "{later}");
    if quick {
        assert!(later.ends_with(" 2\n"), "{later}");
    }
    assert!(calls.load(Ordering::SeqCst) >= 2, "{later}");
}
