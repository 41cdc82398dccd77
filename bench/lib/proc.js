'use strict';
// What bench/run reads from /proc: CPU time, RSS, open fds and the process tree of a server.
// Linux only. The kernel here has no /proc/<pid>/task/*/children (CONFIG_PROC_CHILDREN is off
// on many kernels), so children are found by scanning /proc for the parent pid.

const fs = require('node:fs');
const { execFileSync } = require('node:child_process');

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** Fields of /proc/<pid>/stat after the command name (which may contain spaces), or null. */
function statFields(pid) {
  let text;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Field 3 (state) is fields[0]; field N is fields[N - 3].
  return text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
}

/** utime + stime of a process (all its threads, live or exited), in seconds; null if gone. */
function cpuSeconds(pid) {
  const f = statFields(pid);
  return f ? (Number(f[14 - 3]) + Number(f[15 - 3])) / CLK_TCK : null;
}

/**
 * CPU time of a process's threads in seconds, to the nanosecond: the sum of the first field of
 * /proc/<pid>/task/<tid>/schedstat (time on a CPU). utime+stime count 10 ms ticks, so over a
 * 2 s run a primary that wakes 40 times a second for a few µs read 0 or 0.01 s (0.000 or 0.006
 * cores at 8k conn/s) depending on where the tick fell. Only live threads count: use it around
 * a run for a process whose threads outlive it (a primary). null where schedstat is missing.
 */
function cpuSecondsExact(pid) {
  let tids;
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return null;
  }
  let ns = 0;
  for (const tid of tids) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return Number.isFinite(ns) ? ns / 1e9 : null;
}

/** Start time in clock ticks since boot: with the pid, it names one process (pids get reused). */
function startTime(pid) {
  const f = statFields(pid);
  return f ? f[22 - 3] : null;
}

/** True while the process exists and is not a zombie. */
function isRunning(pid) {
  const f = statFields(pid);
  return f !== null && f[0] !== 'Z' && f[0] !== 'X';
}

/** Resident set size in bytes (VmRSS), or null. */
function rssBytes(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Number of open file descriptors, or null. */
function fdCount(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

/** All live descendants of pid (children, grandchildren, ...), as [{pid, start}]. */
function descendants(pid) {
  const parentOf = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(name);
    if (f && f[0] !== 'Z') parentOf.set(Number(name), Number(f[4 - 3]));
  }
  const found = [];
  const wanted = new Set([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [child, parent] of parentOf) {
      if (wanted.has(parent) && !wanted.has(child)) {
        wanted.add(child);
        found.push({ pid: child, start: startTime(child) });
        grew = true;
      }
    }
  }
  return found;
}

/**
 * A snapshot of every user-space process: pid -> {ppid, start, cpu}, where cpu counts the
 * process's own time and that of the children it has reaped (utime+stime+cutime+cstime).
 * Kernel threads (kthreadd, pid 2, and its children) are left out: they do the kernel's share of
 * our own network traffic.
 */
function processTimes() {
  const all = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(name);
    if (!f) continue;
    const pid = Number(name);
    const ppid = Number(f[4 - 3]);
    if (pid === 2 || ppid === 2) continue;
    const cpu = (Number(f[14 - 3]) + Number(f[15 - 3]) + Number(f[16 - 3]) + Number(f[17 - 3])) / CLK_TCK;
    all.set(pid, { ppid, start: f[22 - 3], cpu });
  }
  return all;
}

/**
 * CPU seconds that processes outside this benchmark (not bench/run, not its descendants) used
 * between two processTimes() snapshots. A process that appeared in between counts whole. One
 * that ended reaches its parent's cutime/cstime with its whole life, so what it had used before
 * the first snapshot is taken off again. Approximate (a process that ends unreaped, or is reaped
 * by us, is missed), but it tells a quiet machine from one where a compiler ran next to us.
 */
function othersCpuSeconds(before, after) {
  const ours = (pid) => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
      if (p === process.pid) return true;
      p = after.get(p)?.ppid ?? before.get(p)?.ppid ?? 0;
    }
    return false;
  };
  let total = 0;
  for (const [pid, a] of after) {
    if (ours(pid)) continue;
    const b = before.get(pid);
    total += b && b.start === a.start ? Math.max(0, a.cpu - b.cpu) : a.cpu;
  }
  for (const [pid, b] of before) {
    if (after.get(pid)?.start !== b.start && !ours(pid)) total -= b.cpu;
  }
  return Math.max(0, total);
}

/** The machine's idle and total CPU time so far, in ticks over all CPUs (/proc/stat). */
function systemTicks() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is inside user already)
  return { idle: f[3] + f[4], total: f.slice(0, 8).reduce((a, b) => a + b, 0) };
}

/** Sum of cpuSeconds over pids that still exist. */
function cpuSecondsOf(pids) {
  return pids.reduce((sum, pid) => sum + (cpuSeconds(pid) ?? 0), 0);
}

module.exports = {
  CLK_TCK,
  cpuSeconds,
  cpuSecondsExact,
  cpuSecondsOf,
  startTime,
  isRunning,
  rssBytes,
  fdCount,
  descendants,
  processTimes,
  othersCpuSeconds,
  systemTicks,
};
