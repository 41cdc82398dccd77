//! A CPU count that respects the affinity mask and cgroup v2 quotas.

use std::fs;
use std::path::{Path, PathBuf};

/// How many workers to start by default: the CPUs this process may run on (affinity mask),
/// lowered to a cgroup v2 `cpu.max` quota (rounded up) on the process's cgroup or any ancestor,
/// and at least 1.
pub fn available_parallelism() -> usize {
    let affinity = affinity_count().unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let quota = cgroup_quota(Path::new("/proc/self/cgroup"), Path::new("/sys/fs/cgroup"));
    affinity.min(quota.unwrap_or(usize::MAX)).max(1)
}

fn affinity_count() -> Option<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    let set = sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    Some(
        (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .count(),
    )
}

/// The smallest `cpu.max` quota (in CPUs, rounded up) from the process's cgroup up to the root.
fn cgroup_quota(proc_cgroup: &Path, mount: &Path) -> Option<usize> {
    let text = fs::read_to_string(proc_cgroup).ok()?;
    // cgroup v2 has a single line "0::/path".
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut dir: PathBuf = mount.join(rel.trim_start_matches('/'));
    let mut best: Option<usize> = None;
    loop {
        if let Some(q) = fs::read_to_string(dir.join("cpu.max"))
            .ok()
            .and_then(|s| parse_cpu_max(&s))
        {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
        if dir == mount || !dir.pop() || !dir.starts_with(mount) {
            break;
        }
    }
    best
}

/// `"max 100000"` means no limit; `"150000 100000"` means 1.5 CPUs, rounded up to 2.
pub(crate) fn parse_cpu_max(s: &str) -> Option<usize> {
    let mut it = s.split_whitespace();
    let quota = it.next()?;
    let period: u64 = it.next()?.parse().ok()?;
    if quota == "max" || period == 0 {
        return None;
    }
    let quota: u64 = quota.parse().ok()?;
    Some((quota.div_ceil(period)).max(1) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_parsing() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("100000 100000"), Some(1));
        assert_eq!(parse_cpu_max("1000 100000"), Some(1));
        assert_eq!(parse_cpu_max("garbage"), None);
    }

    #[test]
    fn quota_walks_up_to_the_root() {
        let root = std::env::temp_dir().join(format!("corral-cg-{}", std::process::id()));
        let leaf = root.join("a/b");
        fs::create_dir_all(&leaf).unwrap();
        fs::write(root.join("a/cpu.max"), "250000 100000\n").unwrap();
        fs::write(leaf.join("cpu.max"), "max 100000\n").unwrap();
        let pc = root.join("cgroup");
        fs::write(&pc, "0::/a/b\n").unwrap();
        assert_eq!(cgroup_quota(&pc, &root), Some(3));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn at_least_one() {
        assert!(available_parallelism() >= 1);
    }
}
