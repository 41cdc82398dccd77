'use strict';
// One measurement of one configuration: start the server, load it with wrk, read /proc, stop it.

const { spawnSync } = require('node:child_process');
const proc = require('./proc');
const { runWrk } = require('./wrk');
const path = require('node:path');
const { Guarded, sleep } = require('./guard');
const { mean } = require('./stats');

const MiB = 1024 * 1024;
const PACED_CLOSE = path.join(__dirname, 'paced_close.js');

/**
 * Who is who in a started server: the process we spawned is the primary and its descendants are
 * the workers; a server without descendants (node-single, or a threaded server) is its own worker
 * and has no primary to measure.
 */
function roles(server) {
  const top = server.guarded.pid;
  const kids = server.guarded.tree();
  return kids.length ? { primary: top, workers: kids } : { primary: null, workers: [top] };
}

/**
 * Warm-up, then a measured wrk run with CPU read from /proc around it (and per-worker request
 * counts when the server reports them).
 */
async function loadRun(server, who, o, log) {
  const base = { url: server.url, connections: o.connections, close: o.close, paceMs: o.paceMs, cookie: o.cookie, cpus: o.wrkCpus, log };
  await runWrk({ ...base, seconds: o.warmupSeconds });
  if (server.resetCounts) {
    server.resetCounts();
    await sleep(100); // the reset travels over the cluster IPC channel to the workers
  }
  // The primary's time to the ns where the system says it (schedstat), else in 10 ms ticks:
  // the same source before and after.
  const exact = who.primary && proc.cpuSecondsExact(who.primary) !== null;
  const primaryCpu = () => (exact ? proc.cpuSecondsExact(who.primary) : proc.cpuSeconds(who.primary));
  const p0 = who.primary ? primaryCpu() : null;
  const w0 = proc.cpuSecondsOf(who.workers);
  const r = await runWrk({ ...base, seconds: o.seconds });
  const p1 = who.primary ? primaryCpu() : null;
  const w1 = proc.cpuSecondsOf(who.workers);

  const out = {
    rate: r.rate,
    requests: r.requests,
    seconds: r.seconds,
    errors: r.errorCount,
    latencyMs: r.latencyMs,
    wrkCores: r.wrkCores,
    workerUsPerReq: ((w1 - w0) / r.requests) * 1e6,
  };
  if (who.primary) {
    out.primaryCores = (p1 - p0) / r.seconds;
    out.primaryUsPerReq = ((p1 - p0) / r.requests) * 1e6;
  }
  if (server.counts && who.primary) {
    const counts = await server.counts();
    out.counts = counts;
    if (counts.length >= 2 && Math.min(...counts) > 0) out.balance = Math.max(...counts) / Math.min(...counts);
  }
  return out;
}

/** The first crash bench/lib/guard.js saw among a server's processes (undefined: none). */
const crashOf = (server) => server.guarded?.crashes[0];

/**
 * Counts a failed round or pass on its row (`entry`): its count, its message, and the stack in
 * the log. The caller marks the sample itself (null) and the row's status.
 */
function recordFailure(entry, err, log, say) {
  entry.failedRounds = (entry.failedRounds ?? 0) + 1;
  entry.errors = [...(entry.errors ?? []), err.message];
  say(`  failed: ${err.message}`);
  log.write(`!!! failed: ${err.stack}\n`);
}

/** One round of one HTTP configuration: startup, keep-alive, close, paced latency. */
async function httpRound(config, s, log) {
  if (config.skewOnly) return { skew: await skewRun(config, s, log) };
  const server = await config.start(log);
  try {
    const who = roles(server);
    const round = {
      startupMs: server.startupMs ? mean(server.startupMs) : undefined,
      workerRssMiB: mean(who.workers.map((pid) => proc.rssBytes(pid) / MiB)),
    };
    const common = { warmupSeconds: s.warmupSeconds, seconds: s.seconds, connections: s.connections, cookie: config.stickyCookie };
    round.keepalive = await loadRun(server, who, { ...common, close: false }, log);
    round.close = await loadRun(server, who, { ...common, close: true }, log);
    round.latency = await loadRun(
      server,
      who,
      { ...common, close: true, connections: s.paced.connections, paceMs: s.paced.paceMs },
      log,
    );
    if (s.at8k && who.primary) {
      round.at8k = await loadRun(
        server,
        who,
        { ...common, close: true, connections: s.at8k.connections, paceMs: s.at8k.paceMs },
        log,
      );
    }
    if (s.skew && config.skew) round.skew = await skewRun(config, s, log);
    if (s.pinned) {
      // Last, as the server stays pinned until it stops.
      pin([...(who.primary ? [who.primary] : []), ...who.workers], s.pinned.server, log);
      round.closePinned = await loadRun(server, who, { ...common, close: true, wrkCpus: s.pinned.wrk }, log);
    }
    // A worker that died mid-round leaves figures of a smaller server: the round fails, loudly.
    const crash = crashOf(server);
    if (crash) throw new Error(`a server process died during the round: ${crash}`);
    return round;
  } finally {
    await server.stop();
  }
}

/**
 * Servers head to head, `Connection: close` and keep-alive, in runs seconds apart rather than
 * minutes: every server is started at once (one not under load waits in epoll), then `passes`
 * passes give each a run of each kind, in an order reversed every other pass, and a ratio is
 * taken within a pass. On the VM of latest.md the CPU's speed drifts by tens of percent from one
 * minute to the next, which rounds minutes apart do not cancel.
 *
 * bench/run runs it twice. The C servers and nginx get two wrk threads (`s.h2h`): with one,
 * they outrun wrk (it uses a whole core: `wrkCores` ≈ 1 in the tables of the rounds), so those
 * tables show wrk's limit; with two the cores are all busy (idle ≈ 0, the table shows it), and
 * what a server does not spend per connection is left to wrk. The Node servers get one
 * (`s.nodeH2h`, as in the rounds): their workers, not wrk, are the limit.
 * @param {object} h the pass settings: {threads, seconds, passes, label}
 * @returns {Promise<object>} name -> {status, rounds: [{close, keepalive}|null per pass]}, each
 *   {rate, wrkCores, idle, errors}
 */
async function headToHead(configs, h, s, log, say = () => {}) {
  const entries = {};
  const running = [];
  const fail = (entry, err) => recordFailure(entry, err, log, say);
  try {
    for (const c of configs) {
      const entry = { status: 'ok', rounds: [] };
      entries[c.name] = entry;
      log.write(`\n=== ${h.label}: start ${c.name} ===\n`);
      try {
        running.push({ name: c.name, entry, server: await c.start(log) });
      } catch (err) {
        fail(entry, err);
        entry.status = `failed: ${err.message}`;
      }
    }
    const load = { connections: s.connections, threads: h.threads, log };
    for (const r of running) await runWrk({ ...load, close: true, url: r.server.url, seconds: s.warmupSeconds });
    const measured = async (url, close) => {
      const t0 = proc.systemTicks();
      const w = await runWrk({ ...load, close, url, seconds: h.seconds });
      const t1 = proc.systemTicks();
      return { rate: w.rate, wrkCores: w.wrkCores, idle: (t1.idle - t0.idle) / (t1.total - t0.total), errors: w.errorCount };
    };
    for (let pass = 0; pass < h.passes; pass++) {
      say(`${h.label} pass ${pass + 1}/${h.passes}`);
      for (const r of pass % 2 ? [...running].reverse() : running) {
        log.write(`\n=== ${h.label} pass ${pass + 1}: ${r.name} ===\n`);
        try {
          r.entry.rounds[pass] = {
            close: await measured(r.server.url, true),
            keepalive: await measured(r.server.url, false),
          };
        } catch (err) {
          r.entry.rounds[pass] = null;
          fail(r.entry, err);
        }
      }
    }
    // A worker that died leaves figures of a smaller server: its passes do not count.
    for (const r of running) {
      const crash = crashOf(r.server);
      if (crash) r.entry.status = `failed: a server process died during the passes: ${crash}`;
    }
  } finally {
    for (const r of running) await r.server.stop();
  }
  return entries;
}

/**
 * Skewed service times: a server of its own whose workers block for `ms` ms on 1 request in
 * `every`, at random (BENCH_SKEW), under a paced `Connection: close` load well below its capacity,
 * from bench/lib/paced_close.js rather than wrk: wrk connects, then waits its pause on the open
 * connection, so every request is dealt to a worker 50 ms before it is sent (paced_close.js says
 * more). Shows what a policy does with a worker stuck on a slow request.
 */
async function skewRun(config, s, log) {
  const server = await config.start(log, { BENCH_SKEW: `${s.skew.every}:${s.skew.ms}` });
  try {
    const o = { url: server.url, connections: s.skew.connections, paceMs: s.skew.paceMs, log };
    await runPacedClose({ ...o, seconds: s.warmupSeconds });
    server.resetCounts();
    await sleep(100); // the reset travels over the cluster IPC channel to the workers
    const r = await runPacedClose({ ...o, seconds: s.skew.seconds ?? s.seconds });
    const counts = await server.counts();
    const out = { ...r, errors: r.errorCount, counts };
    if (counts.length >= 2 && Math.min(...counts) > 0) out.balance = Math.max(...counts) / Math.min(...counts);
    return out;
  } finally {
    await server.stop();
  }
}

/** Runs bench/lib/paced_close.js once; the result has the shape of runWrk's. */
async function runPacedClose({ url, connections, paceMs, seconds, log }) {
  const env = {
    ...process.env,
    BENCH_URL: url,
    BENCH_CONNECTIONS: String(connections),
    BENCH_PACE_MS: String(paceMs),
    BENCH_SECONDS: String(seconds),
  };
  if (log) log.write(`$ BENCH_URL=${url} BENCH_CONNECTIONS=${connections} BENCH_PACE_MS=${paceMs} BENCH_SECONDS=${seconds} node ${PACED_CLOSE}\n`);
  const g = new Guarded('paced_close', process.execPath, [PACED_CLOSE], { env, log });
  try {
    const m = await g.waitForLine(/^bench-result (.*)$/, (seconds + 15) * 1000, 'its result line');
    await g.exited;
    const r = JSON.parse(m[1]);
    const secs = r.duration_us / 1e6;
    return {
      requests: r.requests,
      seconds: secs,
      rate: r.requests / secs,
      errorCount: Object.values(r.errors).reduce((a, b) => a + b, 0),
      errorKinds: r.errors,
      latencyMs: Object.fromEntries(Object.entries(r.latency_us).map(([k, v]) => [k, v / 1000])),
      slowOver100Ms: r.over_100ms,
    };
  } finally {
    await g.stop(1000);
  }
}

/** Restricts every thread of `pids` to `cpus` (taskset -a -p). */
function pin(pids, cpus, log) {
  for (const pid of pids) {
    const r = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { encoding: 'utf8' });
    if (log) log.write(`$ taskset -a -p -c ${cpus} ${pid}\n${r.stdout}${r.stderr}`);
    if (r.status !== 0) throw new Error(`taskset -a -p -c ${cpus} ${pid} failed: ${r.stderr || r.error}`);
  }
}

/**
 * Leak check: the primary's open fds and RSS before and after `count` connections with
 * `Connection: close` (after a warm-up, so lazily created state is already there).
 */
async function leakCheck(config, s, log) {
  const server = await config.start(log);
  try {
    const who = roles(server);
    const pid = who.primary ?? who.workers[0];
    const base = { url: server.url, connections: s.connections, close: true, log };
    await runWrk({ ...base, seconds: s.warmupSeconds });
    await sleep(500);
    const before = { fds: proc.fdCount(pid), rssMiB: proc.rssBytes(pid) / MiB };
    const r = await runWrk({ ...base, seconds: s.leakMaxSeconds, stopAfter: s.leakConnections });
    await sleep(1000); // let the last connections close on the server side
    const after = { fds: proc.fdCount(pid), rssMiB: proc.rssBytes(pid) / MiB };
    return { process: who.primary ? 'primary' : 'single process', connections: r.requests, errors: r.errorCount, before, after };
  } finally {
    await server.stop();
  }
}

module.exports = { httpRound, headToHead, leakCheck, recordFailure };
