'use strict';
// Processes started by bench/run: each one is logged, waited on with a deadline, and stopped by
// pid together with every descendant it had (workers), also when bench/run itself is interrupted.
// Never a kill by name: only pids we started or saw as descendants, checked by start time so a
// reused pid is left alone.

const { spawn } = require('node:child_process');
const proc = require('./proc');

const live = new Set(); // started and not yet stopped (the process or a descendant may still run)
let shuttingDown = false; // set by stopAll(): nothing new may start after it

/** What a server prints when one of its processes dies abnormally: a round with it measured a
 * server short of a worker (hello_http's "worker N exited (code -1, signal 6)", glibc's heap
 * checks, a Rust panic, a sanitizer). */
const CRASH = /exited \(code -1|signal (6|11)\b|double free|corrupt|AddressSanitizer|Segmentation fault|panicked at/;

class Guarded {
  /**
   * @param {string} name   label for messages and the log
   * @param {string} cmd
   * @param {string[]} args
   * @param {{env?: object, log?: import('node:fs').WriteStream, cwd?: string, cleanup?: () => void}} opts
   *   cleanup: synchronous, runs once after the process and its descendants are gone
   */
  constructor(name, cmd, args, { env = process.env, log = null, cwd, cleanup = () => {} } = {}) {
    if (shuttingDown) throw new Error(`${name}: not started, bench/run is stopping`);
    this.name = name;
    this.cleanup = once(cleanup);
    this.lines = [];
    this.exit = null; // {code, signal} once reaped
    this.known = new Map(); // descendant pid -> start time
    this.log = log;
    this.child = spawn(cmd, args, { env, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    this.pid = this.child.pid;
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      this.child.on('error', (err) => {
        this.exit = { code: null, signal: null, error: err.message };
        resolve(this.exit);
      });
    });
    this.listeners = new Set();
    this.child.stdin.on('error', () => {}); // the process may be gone before we write
    splitLines(this.child.stdout, (line) => {
      this.lines.push(line);
      this.writeLog(`[${name} out] ${line}`);
      for (const l of this.listeners) l(line);
    });
    /** stderr lines that say a process of it died abnormally (a worker's abort or crash). */
    this.crashes = [];
    splitLines(this.child.stderr, (line) => {
      if (CRASH.test(line)) this.crashes.push(line);
      this.writeLog(`[${name} err] ${line}`);
    });
    if (this.pid) live.add(this);
  }

  writeLog(text) {
    if (this.log && !this.log.closed) this.log.write(`${text}\n`);
  }

  /**
   * Resolves with the match of the first stdout line (from line index `from` on) that matches re;
   * rejects on the deadline or when the process exits first.
   */
  waitForLine(re, timeoutMs, what = String(re), from = 0) {
    const seen = this.lines.slice(from).find((l) => re.test(l));
    if (seen) return Promise.resolve(re.exec(seen));
    return new Promise((resolve, reject) => {
      const done = (fn, value) => {
        clearTimeout(timer);
        this.listeners.delete(onLine);
        fn(value);
      };
      const onLine = (line) => {
        const m = re.exec(line);
        if (m) done(resolve, m);
      };
      const timer = setTimeout(
        () => done(reject, new Error(`${this.name}: no ${what} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.listeners.add(onLine);
      this.exited.then((e) => {
        const how = e.error ?? `code ${e.code}, signal ${e.signal}`;
        done(reject, new Error(`${this.name} exited (${how}) before printing ${what}`));
      });
    });
  }

  /** Writes one line to the process's stdin. */
  send(line) {
    if (!this.exit) this.child.stdin.write(`${line}\n`);
  }

  /** Current descendants; remembered so that stop() can reap them even after the parent died. */
  tree() {
    const now = proc.descendants(this.pid);
    for (const d of now) this.known.set(d.pid, d.start);
    return now.map((d) => d.pid);
  }

  /** SIGTERM, then SIGKILL after graceMs; then the same for any descendant still running. */
  async stop(graceMs = 5000) {
    if (!this.exit) this.tree();
    await terminate(this.exited, () => this.exit, (sig) => this.child.kill(sig), graceMs);
    const leftovers = [];
    for (const [pid, start] of this.known) {
      const same = () => proc.startTime(pid) === start && proc.isRunning(pid);
      if (!(await waitUntil(() => !same(), 3000))) {
        killPid(pid, 'SIGKILL');
        if (!(await waitUntil(() => !same(), 2000))) leftovers.push(pid);
      }
    }
    live.delete(this);
    this.cleanup();
    if (leftovers.length) {
      throw new Error(`${this.name}: descendants still running after SIGKILL: ${leftovers.join(' ')}`);
    }
  }

  /** Last resort from an exit handler: synchronous SIGKILL of the process and its descendants. */
  killNow() {
    if (!this.exit) this.tree();
    if (!this.exit) killPid(this.pid, 'SIGKILL');
    for (const [pid, start] of this.known) {
      if (proc.startTime(pid) === start) killPid(pid, 'SIGKILL');
    }
    this.cleanup();
  }
}

function once(fn) {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    try {
      fn();
    } catch {
      // cleanup is best effort (temporary files)
    }
  };
}

async function terminate(exited, isDone, kill, graceMs) {
  if (isDone()) return;
  kill('SIGTERM');
  if (await within(exited, graceMs)) return;
  kill('SIGKILL');
  if (!(await within(exited, 5000))) throw new Error('process did not exit after SIGKILL');
}

function killPid(pid, signal) {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function within(promise, ms) {
  let timer;
  return Promise.race([
    promise.then(() => true),
    new Promise((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]).finally(() => clearTimeout(timer));
}

async function waitUntil(cond, ms, stepMs = 25) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(stepMs);
  }
  return true;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function splitLines(stream, onLine) {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop();
    for (const p of parts) onLine(p);
  });
  stream.on('end', () => rest && onLine(rest));
}

/** Stops every process still running (used on SIGINT/SIGTERM and as an exit safety net). */
async function stopAll() {
  shuttingDown = true;
  await Promise.allSettled([...live].map((g) => g.stop(2000)));
}

process.on('exit', () => {
  for (const g of live) g.killNow();
});

const stopping = () => shuttingDown;

module.exports = { Guarded, stopAll, stopping, sleep, waitUntil, within };
