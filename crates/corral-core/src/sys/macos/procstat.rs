//! Per-process resource figures from `proc_pidinfo` (for metrics and recycling).

/// Resident set size in bytes and CPU time (user + system) in seconds of `pid`.
/// libc: nix has no `proc_pidinfo`, and the timebase struct libc marks deprecated (in favour
/// of the `mach2` crate) is the one call needed from it.
#[allow(deprecated)]
pub fn proc_stats(pid: i32) -> Option<(u64, f64)> {
    // SAFETY: proc_taskinfo is plain data; proc_pidinfo writes at most `size` bytes into it.
    let mut info: libc::proc_taskinfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::proc_taskinfo>() as libc::c_int;
    // SAFETY: a valid pointer to `info` of `size` bytes for the duration of the call.
    let n = unsafe {
        libc::proc_pidinfo(
            pid,
            libc::PROC_PIDTASKINFO,
            0,
            (&mut info as *mut libc::proc_taskinfo).cast(),
            size,
        )
    };
    if n != size {
        return None;
    }
    // The times are in Mach absolute time units (nanoseconds on Intel, not on Apple silicon).
    let mut tb = libc::mach_timebase_info { numer: 0, denom: 0 };
    // SAFETY: writes the timebase into our local.
    let rc = unsafe { libc::mach_timebase_info(&mut tb) };
    if rc != 0 || tb.denom == 0 {
        return None;
    }
    let ticks = info.pti_total_user.saturating_add(info.pti_total_system);
    let secs = ticks as f64 * f64::from(tb.numer) / f64::from(tb.denom) / 1e9;
    Some((info.pti_resident_size, secs))
}

/// The process tree's figures: on macOS the process's own (`proc_pidinfo` gives no
/// proportional set size, and no walk of descendants is done yet), documented on
/// `Supervisor::count_descendants`.
pub fn proc_tree_stats(pid: i32) -> Option<(u64, f64)> {
    proc_stats(pid)
}

/// `pid` alone on macOS (see [`proc_tree_stats`]).
pub fn process_tree(pid: i32) -> Vec<i32> {
    if proc_stats(pid).is_some() {
        vec![pid]
    } else {
        Vec::new()
    }
}

/// [`process_tree`] of each of `pids`.
pub fn process_trees(pids: &[i32]) -> Vec<Vec<i32>> {
    pids.iter().map(|&p| process_tree(p)).collect()
}

/// CPU time of a process's main thread (Linux's `/proc/PID/schedstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedTimes {
    /// Nanoseconds it ran on a CPU.
    pub run_ns: u64,
    /// Nanoseconds it waited on a run queue for a CPU.
    pub wait_ns: u64,
}

/// Not known here (`None`): the stall check then takes a silent worker for a stalled one, as
/// it did before it could tell a starved one apart.
pub fn sched_times(_pid: i32) -> Option<SchedTimes> {
    None
}

/// Whether `pid` is runnable: not known here (`false`).
pub fn is_runnable(_pid: i32) -> bool {
    false
}

/// Whether `pid` is stopped: not known here (`false`), so the primary never relies on a stopped
/// worker's queue staying put (see `Inner::stall`).
pub fn is_stopped(_pid: i32) -> bool {
    false
}
