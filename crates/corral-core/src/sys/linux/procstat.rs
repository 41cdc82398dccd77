//! Per-process resource figures from /proc (for metrics and recycling).

use nix::unistd::{sysconf, SysconfVar};

/// Resident set size in bytes and CPU time (user + system) in seconds of `pid`.
pub fn proc_stats(pid: i32) -> Option<(u64, f64)> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = sysconf(SysconfVar::PAGE_SIZE).ok()??.max(1) as u64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start at the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 of `rest` (0-based, from state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = sysconf(SysconfVar::CLK_TCK).ok()??.max(1) as f64;
    Some((resident_pages * page, (utime + stime) as f64 / hz))
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_stats_are_plausible() {
        let (rss, cpu) = super::proc_stats(std::process::id() as i32).unwrap();
        assert!(rss > 1 << 20, "rss {rss}");
        assert!(cpu >= 0.0);
    }
}
