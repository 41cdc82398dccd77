//! Per-process resource figures from /proc (for metrics and recycling): of one process, or
//! of the process tree below it (a worker that pre-forks, e.g. uvicorn `--workers 2`).
//!
//! **Finding the tree.** `/proc/PID/task/TID/children` lists a thread's children
//! (`CONFIG_PROC_CHILDREN`, on in Debian, Fedora and Ubuntu kernels): the walk then reads
//! one small file per thread of each process in the tree, whatever else runs on the host.
//! Without it, one scan of every `/proc/N/stat` gives each process's parent. Both are
//! bounded: a tree stops at [`MAX_TREE`] processes, a scan at [`MAX_SCAN`] entries of
//! `/proc`. A process that forks or exits during the walk may be missed for one sample
//! (the kernel documents `children` as a snapshot); the next sample sees it.
//!
//! **Memory of a tree.** Summing each process's RSS counts the pages they share (a
//! pre-forked parent's code and heap, copy-on-write) once per process, so a pool of N
//! identical children would look N times its real size. The sum of `Pss` from
//! `/proc/PID/smaps_rollup` (Linux 4.14) splits every shared page between the processes
//! that map it; it is used when it is readable for every process of the tree, else the sum
//! of RSS (older kernels, a descendant of another uid), which over-counts shared pages.
//!
//! **CPU of a tree.** Each process's user + system time plus the time of its children it
//! has reaped (`cutime`, `cstime`), so a descendant that exited still counts, once. A
//! descendant that leaves the tree alive (re-parented after its parent exits) takes its time
//! with it: the figure can then go down.

use nix::unistd::{sysconf, SysconfVar};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Most processes of a tree that are visited; the rest are not counted.
pub const MAX_TREE: usize = 1024;
/// Most `/proc` entries read when the kernel has no `children` files.
pub const MAX_SCAN: usize = 32_768;

/// Resident set size in bytes and CPU time (user + system) in seconds of `pid`.
pub fn proc_stats(pid: i32) -> Option<(u64, f64)> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = sysconf(SysconfVar::PAGE_SIZE).ok()??.max(1) as u64;
    let t = times(pid)?;
    Some((
        resident_pages * page,
        (t.utime + t.stime) as f64 / clock_hz(),
    ))
}

/// Memory in bytes (the sum of `Pss`, else of RSS: see the module docs) and CPU time in
/// seconds (with reaped children's) of `pid` and its descendants. `None` if `pid` is gone.
pub fn proc_tree_stats(pid: i32) -> Option<(u64, f64)> {
    let f = tree_figures(pid)?;
    Some((f.pss.unwrap_or(f.rss), f.ticks as f64 / clock_hz()))
}

struct TreeFigures {
    /// Sum of `Pss`, if every process's could be read.
    pss: Option<u64>,
    rss: u64,
    /// CPU clock ticks, with reaped children's.
    ticks: u64,
}

fn tree_figures(pid: i32) -> Option<TreeFigures> {
    tree_figures_in(Path::new("/proc"), pid)
}

/// [`tree_figures`] with `proc` mounted there (a test builds a fake one).
fn tree_figures_in(proc: &Path, pid: i32) -> Option<TreeFigures> {
    let tree = trees_in(proc, &[pid]).pop().unwrap_or_default();
    if tree.is_empty() {
        return None;
    }
    let page = sysconf(SysconfVar::PAGE_SIZE).ok()??.max(1) as u64;
    let (mut pss, mut rss, mut ticks) = (Some(0u64), 0u64, 0u64);
    let mut root_seen = false;
    for &p in &tree {
        // A process that ended since the walk is skipped; the root is required.
        let Some(t) = times_in(proc, p) else { continue };
        let Some(resident) = std::fs::read_to_string(proc.join(format!("{p}/statm")))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        else {
            continue;
        };
        // Nothing resident (a zombie not yet reaped: its smaps_rollup is empty) adds 0 and
        // must not turn the whole tree to the RSS sum; nor may a process that ended between
        // its statm and its smaps_rollup (a pre-forked child replaced, a command run by the
        // worker), which is skipped as if it had ended before.
        let own_pss = if resident > 0 {
            match pss_in(proc, p) {
                Pss::Bytes(b) => Some(b),
                Pss::Gone => continue,
                Pss::Unreadable => None,
            }
        } else {
            Some(0)
        };
        root_seen |= p == pid;
        ticks += t.utime + t.stime + t.cutime + t.cstime;
        rss += resident * page;
        pss = pss.zip(own_pss).map(|(sum, b)| sum + b);
    }
    root_seen.then_some(TreeFigures { pss, rss, ticks })
}

/// `pid` and its descendants, `pid` first, at most [`MAX_TREE`]; empty if `pid` is gone.
pub fn process_tree(pid: i32) -> Vec<i32> {
    process_trees(&[pid]).pop().unwrap_or_default()
}

/// `process_tree` of each of `pids`, in order, with at most one scan of `/proc` for all.
pub fn process_trees(pids: &[i32]) -> Vec<Vec<i32>> {
    trees_in(Path::new("/proc"), pids)
}

/// [`process_trees`] with `proc` mounted there (a test builds a fake one).
fn trees_in(proc: &Path, pids: &[i32]) -> Vec<Vec<i32>> {
    let alive = |pid: i32| pid > 0 && proc.join(format!("{pid}/stat")).exists();
    let mut by_parent: Option<HashMap<i32, Vec<i32>>> = None;
    pids.iter()
        .map(|&pid| {
            if !alive(pid) {
                return Vec::new();
            }
            let has_children_files = proc.join(format!("{pid}/task/{pid}/children")).exists();
            if !has_children_files && by_parent.is_none() {
                by_parent = Some(parents_scan(proc));
            }
            let mut tree = vec![pid];
            let mut seen = HashSet::from([pid]);
            let mut i = 0;
            while i < tree.len() && tree.len() < MAX_TREE {
                let p = tree[i];
                i += 1;
                let kids = match (&by_parent, has_children_files) {
                    (Some(map), false) => map.get(&p).cloned().unwrap_or_default(),
                    _ => children_of(proc, p),
                };
                for k in kids {
                    if tree.len() >= MAX_TREE {
                        break;
                    }
                    if seen.insert(k) {
                        tree.push(k);
                    }
                }
            }
            tree
        })
        .collect()
}

/// Children of every thread of `pid`, from `/proc/PID/task/*/children`.
fn children_of(proc: &Path, pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(proc.join(format!("{pid}/task"))) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|s| s.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// Parent pid -> children, from at most [`MAX_SCAN`] entries of `/proc`.
fn parents_scan(proc: &Path) -> HashMap<i32, Vec<i32>> {
    let mut map: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir(proc) else {
        return map;
    };
    for e in dir.flatten().take(MAX_SCAN) {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(proc.join(format!("{p}/stat"))) else {
            continue;
        };
        if let Some(ppid) = stat_fields(&stat).and_then(|f| f.get(1)?.parse::<i32>().ok()) {
            map.entry(ppid).or_default().push(p);
        }
    }
    map
}

struct Times {
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

fn times(pid: i32) -> Option<Times> {
    times_in(Path::new("/proc"), pid)
}

fn times_in(proc: &Path, pid: i32) -> Option<Times> {
    let stat = std::fs::read_to_string(proc.join(format!("{pid}/stat"))).ok()?;
    let f = stat_fields(&stat)?;
    // utime, stime, cutime, cstime are fields 14 to 17 of stat: 11 to 14 of these
    // (0-based, from the state).
    let n = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Times {
        utime: n(11)?,
        stime: n(12)?,
        // Signed in the kernel's format; never negative in practice.
        cutime: n(13).unwrap_or(0),
        cstime: n(14).unwrap_or(0),
    })
}

/// Whether `pid`'s main thread is runnable: state `R` in `/proc/PID/stat` (running, or waiting
/// on a run queue for a CPU). `false` when it cannot be read.
pub fn is_runnable(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_fields(&s)?.first().map(|f| *f == "R"))
        .unwrap_or(false)
}

/// Whether `pid` is stopped (SIGSTOP, a debugger): state `T` or `t` in `/proc/PID/stat`. A
/// stopped process reads nothing until it is continued. `false` when it cannot be read.
pub fn is_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_fields(&s)?.first().map(|f| matches!(*f, "T" | "t")))
        .unwrap_or(false)
}

/// CPU time of a process's main thread, from the scheduler's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedTimes {
    /// Nanoseconds it ran on a CPU.
    pub run_ns: u64,
    /// Nanoseconds it was runnable and waited on a run queue for a CPU (also while its cgroup
    /// was throttled).
    pub wait_ns: u64,
}

/// [`SchedTimes`] of `pid`'s main thread (`/proc/PID/schedstat`, a kernel built with
/// `CONFIG_SCHED_INFO`, as distributions build it); `None` when it cannot be read.
pub fn sched_times(pid: i32) -> Option<SchedTimes> {
    parse_schedstat(&std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?)
}

fn parse_schedstat(s: &str) -> Option<SchedTimes> {
    let mut f = s.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some(SchedTimes {
        run_ns: f.next()??,
        wait_ns: f.next()??,
    })
}

/// The fields of a `/proc/PID/stat` after the command, which may hold spaces and ')':
/// from the last ')'.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    Some(rest.split_whitespace().collect())
}

/// What `/proc/PID/smaps_rollup` says of a process that had memory resident.
enum Pss {
    Bytes(u64),
    /// Ended since: the file is gone, or empty (its memory released, a zombie now).
    Gone,
    /// Not readable (another uid's process), or not in the expected form.
    Unreadable,
}

fn pss_in(proc: &Path, pid: i32) -> Pss {
    match std::fs::read_to_string(proc.join(format!("{pid}/smaps_rollup"))) {
        Ok(text) if text.is_empty() => Pss::Gone,
        Ok(text) => parse_pss(&text).map_or(Pss::Unreadable, Pss::Bytes),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ESRCH) =>
        {
            Pss::Gone
        }
        Err(_) => Pss::Unreadable,
    }
}

/// `Pss:` of `/proc/PID/smaps_rollup`, in bytes.
#[cfg(test)]
fn pss_bytes(pid: i32) -> Option<u64> {
    parse_pss(&std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?)
}

/// The `Pss:` line of a smaps_rollup text, in bytes.
fn parse_pss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kb: u64 = line["Pss:".len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn clock_hz() -> f64 {
    sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |hz| hz.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stats_are_plausible() {
        let (rss, cpu) = proc_stats(std::process::id() as i32).unwrap();
        assert!(rss > 1 << 20, "rss {rss}");
        assert!(cpu >= 0.0);
    }

    #[test]
    fn a_tree_holds_a_child_and_its_memory() {
        // A child of this test process that holds 32 MiB of its own (touched) memory, says so
        // once it does, then waits in a builtin (`read`, on a pipe this test holds open).
        // Sampled before that line, the figures move under the test: while the string is
        // read, dash's buffer grows by doubling (RSS 30 -> 49 -> 34.5 MB here); and a `sleep`
        // forked after it shares dash's pages until its exec, so a walk that has not seen it
        // yet counts dash at half. Reading the string took 6 s under a load average of 14.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "x=$(head -c 33554432 /dev/zero | tr '\\0' x); echo held; read y",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        struct Reap<'a>(&'a mut std::process::Child);
        impl Drop for Reap<'_> {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let kid = child.id() as i32;
        let out = child.stdout.take().unwrap();
        let _guard = Reap(&mut child);
        let (tx, rx) = std::sync::mpsc::channel();
        // Ends at the line or at end of file (the child killed by the guard).
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("child did not hold its 32 MiB within 60 s");
        assert_eq!(
            line, "held\n",
            "child {kid} ended before holding its 32 MiB"
        );
        let me = std::process::id() as i32;
        let tree = process_tree(me);
        assert_eq!(tree[0], me);
        assert!(tree.contains(&kid), "child {kid} not in the tree {tree:?}");
        let (own, _) = proc_tree_stats(kid).unwrap();
        assert!(own > 32 << 20, "child {kid} holds {own} bytes, not 32 MiB");
        let (all, _) = proc_tree_stats(me).unwrap();
        assert!(all >= own, "the tree ({all}) holds the child's {own} bytes");
        assert!(process_tree(-1).is_empty());
    }

    /// A fake /proc: `(pid, ppid, threads)`; with `children`, the process's children are
    /// listed in its last thread's `children` file (the others are empty), so every thread's
    /// file must be read.
    fn fake_proc(tag: &str, procs: &[(i32, i32, &[i32])], children: bool) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("corral-proc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for &(pid, ppid, threads) in procs {
            let dir = root.join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            // comm with a space and a ')' to check the parse from the last ')'.
            let stat = format!("{pid} (a) b) S {ppid} 1 1 0 -1 0 0 0 0 0 5 6 7 8 20 0 1 0");
            std::fs::write(dir.join("stat"), stat).unwrap();
            for (i, &tid) in threads.iter().enumerate() {
                let t = dir.join(format!("task/{tid}"));
                std::fs::create_dir_all(&t).unwrap();
                if children {
                    let kids: Vec<String> = procs
                        .iter()
                        .filter(|&&(_, pp, _)| pp == pid && i + 1 == threads.len())
                        .map(|&(k, _, _)| format!("{k} "))
                        .collect();
                    std::fs::write(t.join("children"), kids.concat()).unwrap();
                }
            }
        }
        root
    }

    #[test]
    fn trees_are_found_from_children_files_and_from_a_scan() {
        // 10 -> 11 (two threads) -> 13; 10 -> 12; 20 is another tree; 1 is init.
        let procs: &[(i32, i32, &[i32])] = &[
            (1, 0, &[1]),
            (10, 1, &[10]),
            (11, 10, &[11, 14]),
            (12, 10, &[12]),
            (13, 11, &[13]),
            (20, 1, &[20]),
        ];
        for children in [true, false] {
            let root = fake_proc(&children.to_string(), procs, children);
            let mut trees = trees_in(&root, &[10, 20, 11, 99]);
            for t in &mut trees[..3] {
                t[1..].sort();
            }
            assert_eq!(
                trees,
                vec![vec![10, 11, 12, 13], vec![20], vec![11, 13], vec![]],
                "children files: {children}"
            );
            std::fs::remove_dir_all(&root).unwrap();
        }
    }

    #[test]
    fn a_process_that_ends_during_the_sample_keeps_the_tree_on_pss() {
        // 10 -> 11, 12; each has 50 pages resident. 11's smaps_rollup as it is when 11 ended
        // between the read of its statm and of its smaps_rollup (gone, or empty), as it is
        // when it lives, and unreadable (a directory here; another uid's in life).
        let page = sysconf(SysconfVar::PAGE_SIZE).unwrap().unwrap() as u64;
        let procs: &[(i32, i32, &[i32])] = &[(10, 1, &[10]), (11, 10, &[11]), (12, 10, &[12])];
        let cases: [(&str, Option<&str>, Option<u64>, u64); 4] = [
            ("gone", None, Some(130), 100),
            ("emptied", Some(""), Some(130), 100),
            ("alive", Some("Rss: 200 kB\nPss: 40 kB\n"), Some(170), 150),
            ("unreadable", Some("dir"), None, 150),
        ];
        for (tag, smaps, pss_kb, pages) in cases {
            let root = fake_proc(&format!("pss-{tag}"), procs, true);
            for (pid, pss) in [
                (10, Some("Pss: 100 kB\n")),
                (11, smaps),
                (12, Some("Pss: 30 kB\n")),
            ] {
                let dir = root.join(pid.to_string());
                std::fs::write(dir.join("statm"), "300 50 10 1 0 40 0").unwrap();
                match pss {
                    Some("dir") => std::fs::create_dir(dir.join("smaps_rollup")).unwrap(),
                    Some(text) => std::fs::write(dir.join("smaps_rollup"), text).unwrap(),
                    None => {}
                }
            }
            let f = tree_figures_in(&root, 10).unwrap();
            assert_eq!(f.pss, pss_kb.map(|kb| kb * 1024), "{tag}: Pss");
            assert_eq!(f.rss, pages * page, "{tag}: RSS");
            // utime + stime + cutime + cstime = 26 ticks each (fake_proc's stat).
            assert_eq!(f.ticks, 26 * pages / 50, "{tag}: ticks");
            std::fs::remove_dir_all(&root).unwrap();
        }
    }

    #[test]
    fn an_unreaped_zombie_keeps_the_tree_on_pss() {
        if !std::path::Path::new("/proc/self/smaps_rollup").exists() {
            return; // Linux < 4.14: the RSS sum is the documented figure.
        }
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let kid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // Exited but not waited for: a zombie child of this process.
        while !std::fs::read_to_string(format!("/proc/{kid}/stat"))
            .is_ok_and(|s| stat_fields(&s).is_some_and(|f| f[0] == "Z"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "child {kid} not a zombie within 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let me = std::process::id() as i32;
        let f = tree_figures(me).unwrap();
        let tree = process_tree(me);
        child.wait().unwrap();
        assert!(tree.contains(&kid), "the zombie {kid} is in {tree:?}");
        assert!(f.pss.is_some(), "the tree's Pss was dropped for the zombie");
    }

    #[test]
    fn pss_is_read_when_the_kernel_has_it() {
        if std::path::Path::new("/proc/self/smaps_rollup").exists() {
            assert!(pss_bytes(std::process::id() as i32).unwrap() > 0);
        }
    }
}
