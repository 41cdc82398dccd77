//! EMFILE in the primary: accept fails with a clear error event, the primary does not spin,
//! the clients wait in the kernel backlog, and all of them are served once fds are available.
//! (A child process is the primary, so its fd limit can be lowered with prlimit(2).)

mod util;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use util::{cpu_seconds, leave_no_fd_free, set_nofile, FixturePrimary};

#[test]
fn emfile_is_reported_without_spinning_and_no_client_is_lost() {
    let mut guard = FixturePrimary::start(1);
    let out = guard.0.stdout.take().unwrap();
    let pid = guard.0.id() as i32;
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str, pred: &dyn Fn(&str) -> bool| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what} from the primary"));
            if pred(&line) {
                return line;
            }
        }
    };
    let port: u16 = next("port", &|l| l.starts_with("port "))
        .trim_start_matches("port ")
        .parse()
        .unwrap();
    leave_no_fd_free(pid);

    let clients: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port))?;
                s.set_read_timeout(Some(Duration::from_secs(20)))?;
                s.write_all(b"hi\n")?;
                let mut answer = String::new();
                s.read_to_string(&mut answer)?;
                Ok::<String, std::io::Error>(answer)
            })
        })
        .collect();
    let err = next("an accept error", &|l| l.starts_with("error "));
    assert!(err.contains("accept") && err.contains("EMFILE"), "{err}");
    // Stuck on EMFILE for a second: the primary retries every 100 ms, it does not spin.
    let cpu0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_seconds(pid) - cpu0;
    assert!(
        cpu < 0.2,
        "the primary used {cpu:.2} s of CPU in 1 s while stuck on EMFILE"
    );
    // Reported once, not at every retry.
    assert!(
        rx.try_iter().all(|l| !l.starts_with("error ")),
        "the EMFILE error was repeated"
    );
    // Room again: every waiting client is served.
    set_nofile(pid, 1024);
    for c in clients {
        let answer = c.join().unwrap().expect("client served after EMFILE");
        assert!(answer.starts_with("worker 1 pid "), "{answer:?}");
    }
}
