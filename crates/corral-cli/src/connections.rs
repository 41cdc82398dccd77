//! Open connections per worker for `corral status`, counted from the kernel: the workers are
//! foreign programs that report nothing.
//!
//! A worker's count is the number of distinct sockets that (a) one of its processes holds as
//! an fd (`/proc/PID/fd` -> `socket:[INODE]`) and (b) the kernel lists as an established
//! connection on one of corral's listeners: TCP state 01 (ESTABLISHED) in
//! `/proc/PID/net/tcp` and `tcp6` whose local port (and address, unless the listener is a
//! wildcard) is a listener's, or a connected Unix stream socket in `/proc/PID/net/unix` that
//! carries a listener's path (a socket accepted on a bound Unix listener shows its path).
//! The worker's own outgoing connections (to a database, an upstream) are not counted, nor
//! connections in CLOSE_WAIT (the client has gone; the server has not closed yet).
//!
//! "Its processes" is the process tree under the pid corral started (the pid `status`
//! shows), so a pre-forking program (uvicorn `--workers`, gunicorn) counts the connections
//! of its children under its own row; a socket shared by several processes of the tree
//! counts once.
//!
//! Why `/proc` and not `sock_diag` netlink: `sock_diag` would filter by state in the kernel
//! (cheaper with very many sockets), but needs raw netlink structs and `unsafe`, which this
//! crate does not have (the engine keeps all of it in its `sys/`); a status request is a
//! human's or a probe's (or a metrics scrape's, at most one every 250 ms), rare enough to read
//! a few text files. The process trees are the engine's (`corral_core::process_trees`: each
//! thread's `children` file, else one scan of `/proc/*/stat`; at most 1024 processes a
//! tree), each network namespace's tables are read once.
//! A count is `None` when the kernel would not say (another uid's fds, `hidepid`, no `/proc`).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// A listener whose connections are counted.
#[derive(Debug, Clone)]
pub enum Local {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Local {
    pub fn of(addr: &corral_core::BoundAddr) -> Option<Local> {
        match addr {
            corral_core::BoundAddr::Tcp(a) => Some(Local::Tcp(*a)),
            corral_core::BoundAddr::Unix(p) if !p.as_os_str().is_empty() => {
                Some(Local::Unix(p.clone()))
            }
            _ => None,
        }
    }
}

/// Counts for `pids` (in order) of connections established on `listeners`.
pub fn count(pids: &[i32], listeners: &[Local]) -> Vec<Option<u64>> {
    if pids.is_empty() {
        return Vec::new();
    }
    let trees = corral_core::process_trees(pids);
    // Established sockets per network namespace (workers normally share corral's).
    let mut tables: HashMap<String, Option<HashSet<u64>>> = HashMap::new();
    pids.iter()
        .zip(trees)
        .map(|(&pid, tree)| {
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .ok()?
                .display()
                .to_string();
            let established = tables
                .entry(ns)
                .or_insert_with(|| established(pid, listeners))
                .as_ref()?;
            let mut held = HashSet::new();
            let mut readable = false;
            for p in tree {
                readable |= socket_inodes(p, &mut held);
            }
            // The worker's own fds unreadable: say "unknown", not 0.
            readable.then(|| held.intersection(established).count() as u64)
        })
        .collect()
}

/// The gauge `corral_worker_connections{worker="ID",pid="PID"}` for the metrics endpoint,
/// counted at scrape time as for `status`; a worker whose count is unknown has no row.
pub fn prometheus(workers: &[(u64, i32)], listeners: &[Local]) -> String {
    let pids: Vec<i32> = workers.iter().map(|&(_, pid)| pid).collect();
    let mut out = String::from(
        "# HELP corral_worker_connections Connections established on corral's listeners held \
         by the worker's process tree (counted from /proc).\n\
         # TYPE corral_worker_connections gauge\n",
    );
    for (&(id, pid), n) in workers.iter().zip(count(&pids, listeners)) {
        if let Some(n) = n {
            out.push_str(&format!(
                "corral_worker_connections{{worker=\"{id}\",pid=\"{pid}\"}} {n}\n"
            ));
        }
    }
    out
}

/// Adds the inodes of `pid`'s socket fds to `out`; false when its fds cannot be read.
fn socket_inodes(pid: i32, out: &mut HashSet<u64>) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    for e in dir.flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse().ok())
            {
                out.insert(inode);
            }
        }
    }
    true
}

/// Inodes of the connections established on `listeners`, seen from `pid`'s namespace.
fn established(pid: i32, listeners: &[Local]) -> Option<HashSet<u64>> {
    let mut out = HashSet::new();
    let tcp: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| match l {
            Local::Tcp(a) => Some(*a),
            Local::Unix(_) => None,
        })
        .collect();
    let unix: Vec<&PathBuf> = listeners
        .iter()
        .filter_map(|l| match l {
            Local::Unix(p) => Some(p),
            Local::Tcp(_) => None,
        })
        .collect();
    if !tcp.is_empty() {
        let mut any = false;
        for (file, v6) in [("tcp", false), ("tcp6", true)] {
            // tcp6 is missing when IPv6 is off: not an error while tcp was read.
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
                any = true;
                tcp_established(&text, v6, &tcp, &mut out);
            }
        }
        if !any {
            return None;
        }
    }
    if !unix.is_empty() {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).ok()?;
        unix_connected(&text, &unix, &mut out);
    }
    Some(out)
}

/// Rows of `/proc/net/tcp{,6}`: "sl local rem st tx:rx tr:when retr uid timeout inode ...",
/// addresses as hex words in host order, ports as big-endian hex.
///
/// The table holds every socket of the namespace, TIME_WAIT ones too: tens of thousands on a
/// busy host, read while the cluster's loop waits. So a row is split only as far as its
/// state, and only an established one on a listener's port further.
fn tcp_established(text: &str, v6: bool, listeners: &[SocketAddr], out: &mut HashSet<u64>) {
    for line in text.lines().skip(1) {
        let mut f = line.split_ascii_whitespace();
        let (Some(_sl), Some(local), Some(_remote), Some("01")) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Some(local) = parse_tcp_addr(local, v6) else {
            continue;
        };
        let on_listener = listeners.iter().any(|l| {
            l.port() == local.port() && (l.ip().is_unspecified() || same_ip(l.ip(), local.ip()))
        });
        // After the state: tx:rx, tr:when, retrnsmt, uid, timeout, inode.
        if let (true, Some(Ok(inode))) = (on_listener, f.nth(5).map(str::parse::<u64>)) {
            out.insert(inode);
        }
    }
}

/// 127.0.0.1 and ::ffff:127.0.0.1 are one address (a v4 client on a dual-stack listener).
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    canon(a) == canon(b)
}

fn parse_tcp_addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = if v6 {
        if ip.len() != 32 {
            return None;
        }
        // Four 32-bit words, each in host byte order.
        let mut bytes = [0u8; 16];
        for w in 0..4 {
            let word = u32::from_str_radix(&ip[w * 8..w * 8 + 8], 16).ok()?;
            bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else {
        IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(ip, 16).ok()?.to_ne_bytes(),
        ))
    };
    Some(SocketAddr::new(ip, port))
}

/// Rows of `/proc/net/unix`: `Num RefCount Protocol Flags Type St Inode [Path]`; St 03 is
/// connected, Type 0001 is SOCK_STREAM.
///
/// As for TCP, a row is split only as far as its type and state.
fn unix_connected(text: &str, listeners: &[&PathBuf], out: &mut HashSet<u64>) {
    for line in text.lines().skip(1) {
        let mut f = line.split_ascii_whitespace();
        let (Some(_num), Some(_refs), Some(_proto), Some(_flags), Some("0001"), Some("03")) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Some(Ok(inode)) = f.next().map(str::parse::<u64>) else {
            continue;
        };
        // A path with spaces is split: join the rest back.
        let path = f.collect::<Vec<_>>().join(" ");
        if !path.is_empty() && listeners.iter().any(|l| l.as_os_str() == path.as_str()) {
            out.insert(inode);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tcp_rows_count_only_established_connections_on_a_listener() {
        // 127.0.0.1:8080 listening (0A), one client in (01), one outgoing from an ephemeral
        // port (01, not on the listener), one in CLOSE_WAIT (08).
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 100 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 101 1 0 20 4 30 10 -1
   2: 0100007F:D432 0100007F:0CEA 01 00000000:00000000 00:00000000 00000000  1000        0 102 1 0 20 4 30 10 -1
   3: 0100007F:1F90 0100007F:D433 08 00000000:00000000 00:00000000 00000000  1000        0 103 1 0 20 4 30 10 -1
";
        let mut out = HashSet::new();
        tcp_established(text, false, &["127.0.0.1:8080".parse().unwrap()], &mut out);
        assert_eq!(out, HashSet::from([101]));
        // Another address on the same port is another listener's.
        let mut out = HashSet::new();
        tcp_established(text, false, &["10.0.0.1:8080".parse().unwrap()], &mut out);
        assert!(out.is_empty());
        let mut out = HashSet::new();
        tcp_established(text, false, &["0.0.0.0:8080".parse().unwrap()], &mut out);
        assert_eq!(out, HashSet::from([101]));
    }

    #[test]
    fn tcp6_rows_and_v4_mapped_addresses_are_read() {
        // ::ffff:127.0.0.1 port 8080 on a [::]:8080 listener, and ::1 port 8080.
        let text = "header
   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:D431 01 0:0 0:0 0 1000 0 201 1
   1: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D432 01 0:0 0:0 0 1000 0 202 1
";
        let mut out = HashSet::new();
        tcp_established(text, true, &["[::]:8080".parse().unwrap()], &mut out);
        assert_eq!(out, HashSet::from([201, 202]));
        let mut out = HashSet::new();
        tcp_established(text, true, &["127.0.0.1:8080".parse().unwrap()], &mut out);
        assert_eq!(out, HashSet::from([201]));
        let mut out = HashSet::new();
        tcp_established(text, true, &["[::1]:8080".parse().unwrap()], &mut out);
        assert_eq!(out, HashSet::from([202]));
    }

    #[test]
    fn unix_rows_count_connected_streams_with_the_listener_path() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 300 /run/app.sock
0000000000000000: 00000003 00000000 00000000 0001 03 301 /run/app.sock
0000000000000000: 00000003 00000000 00000000 0001 03 302
0000000000000000: 00000003 00000000 00000000 0001 03 303 /run/other.sock
0000000000000000: 00000002 00000000 00000000 0002 03 304 /run/app.sock
";
        let p = PathBuf::from("/run/app.sock");
        let mut out = HashSet::new();
        unix_connected(text, &[&p], &mut out);
        assert_eq!(out, HashSet::from([301]));
    }

    /// CPU time of the calling thread.
    fn thread_cpu() -> Duration {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(Duration::from)
            .unwrap()
    }

    #[test]
    fn a_table_of_many_time_wait_rows_is_read_cheaply() {
        // A busy host: 100,000 TIME_WAIT rows (06) around two established connections, one on
        // the listener. `status` reads this table in the cluster's loop: splitting every row
        // whole took 0.8 s of CPU in a debug build (with 56,000 such rows and a load average
        // of 15, `corral status` got no answer within its 10 s); skipping a row at its state
        // takes 0.1 s.
        let head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        let row = |i: usize, port: &str, st: &str, inode: usize| {
            format!(
                "{i:6}: 0100007F:{port} 0100007F:D431 {st} 00000000:00000000 03:00001234 \
                 00000000     0        0 {inode} 3 0000000000000000\n"
            )
        };
        let mut text = String::from(head);
        for i in 0..100_000 {
            text.push_str(&row(i, "1F90", "06", 0));
            if i == 50_000 {
                text.push_str(&row(i, "1F90", "01", 7001));
                text.push_str(&row(i, "1F91", "01", 7002));
            }
        }
        let t0 = thread_cpu();
        let mut out = HashSet::new();
        tcp_established(&text, false, &["127.0.0.1:8080".parse().unwrap()], &mut out);
        let cpu = thread_cpu() - t0;
        println!("100,000 TIME_WAIT rows and 2 established: {cpu:?} of CPU");
        assert_eq!(out, HashSet::from([7001]));
        assert!(
            cpu < Duration::from_millis(500),
            "100,000 TIME_WAIT rows took {cpu:?} of CPU"
        );
    }

    #[test]
    fn own_process_connection_is_counted() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (_server, _) = l.accept().unwrap();
        let me = std::process::id() as i32;
        // The client end is ours too, but its local port is not the listener's.
        assert_eq!(count(&[me], &[Local::Tcp(addr)]), vec![Some(1)]);
    }
}
