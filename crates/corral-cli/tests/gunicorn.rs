//! gunicorn (from PyPI) under corral: each corral worker is a gunicorn arbiter with one sync
//! worker on the inherited socket. gunicorn reads LISTEN_FDS itself (LISTEN_PID is its pid):
//! no `--bind`; `--bind fd://3` as well would take fd 3 twice and fail (EBADF). Its own
//! sd_notify `READY=1` gates corral's reload; SIGHUP under load, SIGTERM drains.

mod util;
use std::time::{Duration, Instant};
use util::*;

fn start(py: &str, extra: &[&str], env: &[(&str, &str)]) -> Corral {
    let app_dir = programs_dir();
    let mut args = vec![
        "run",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--reload-wait-ready",
    ];
    args.extend(extra);
    args.extend([
        "--",
        py,
        "-m",
        "gunicorn",
        "--workers",
        "1",
        "--chdir",
        &app_dir,
        "--graceful-timeout",
        "10",
        "wsgi_app:app",
    ]);
    Corral::start(&args, env)
}

#[test]
fn gunicorn_says_ready_itself_reloads_under_load_and_drains_on_sigterm() {
    let py = venv_python();
    let c = start(
        &py,
        &["--reload-probation", "300ms"],
        &[("APP_DELAY_MS", "5")],
    );
    let port = c.port();
    c.wait_ready(2, Duration::from_secs(30));
    let st = c.status();
    assert!(
        st["workers"][0]["status"].as_str() == Some("Gunicorn arbiter booted"),
        "gunicorn's own READY=1 and STATUS= reached corral: {st}"
    );
    let load = Load::start(port, 4);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    c.signal("HUP");
    c.wait_line("corral: reload", Duration::from_secs(60));
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, errors) = load.finish();
    eprintln!(
        "SIGHUP reload of 2 gunicorn arbiters under 4 clients: {ok} ok, {} failed, {took:?}",
        errors.len()
    );
    assert_eq!(
        c.count_lines("reload done: 2 workers replaced"),
        1,
        "{}",
        c.stderr()
    );
    assert_clean(ok, &errors, 5);
    drop(c);

    let mut c = start(
        &py,
        &["--shutdown-timeout", "15s"],
        &[("APP_DELAY_MS", "700")],
    );
    let port = c.port();
    c.wait_ready(2, Duration::from_secs(30));
    let took = c.sigterm_in_flight(port, 2, Duration::from_secs(30));
    eprintln!("SIGTERM to corral's exit, 2 in-flight 700 ms gunicorn requests: {took:?}");
}
