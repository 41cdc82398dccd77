'use strict';
// Runs wrk once and returns what its Lua done() hook reported (bench/lib/wrk.lua).
//
// One wrk thread by default: on 2 cores wrk gets one core and the server under test (primary + 2
// workers) the other plus whatever wrk leaves. That suits servers slower than one wrk thread (the
// Node rows); a server faster than it (the C servers, nginx) leaves wrk's core the limit, which
// `wrkCores` shows, and is measured head to head with two threads (bench/lib/measure.js). 50
// connections keep both workers busy (25 each) without building deep queues; the paced latency
// run uses fewer connections (see bench/run).

const path = require('node:path');
const { Guarded } = require('./guard');

const WRK_LUA = path.join(__dirname, 'wrk.lua');

/**
 * @param {object} o
 * @param {string} o.url
 * @param {number} o.seconds       integer duration (-d), the upper bound of the run
 * @param {number} [o.connections]
 * @param {boolean} [o.close]      send `Connection: close` (one TCP connection per request)
 * @param {number} [o.paceMs]      per-connection delay before each request (fixed-rate load)
 * @param {number} [o.stopAfter]   stop after this many responses
 * @param {string} [o.cookie]      a random cookie of this name on each request (sticky by key)
 * @param {number} [o.threads]     wrk threads (-t), 1 unless told
 * @param {import('node:fs').WriteStream} [o.log]
 * @returns {Promise<{requests:number, seconds:number, rate:number, errors:object,
 *   errorCount:number, latencyMs:{p50:number,p90:number,p99:number,max:number},
 *   wrkCores:number}>}  wrkCores: wrk's own CPU over the run, in cores (1.0 = one thread busy)
 */
async function runWrk({ url, seconds, connections = 50, close = false, paceMs, stopAfter, cookie, cpus, threads = 1, log }) {
  const args = [`-t${threads}`, `-c${connections}`, `-d${seconds}s`, '--timeout', '5s', '-s', WRK_LUA];
  if (close) args.push('-H', 'Connection: close');
  args.push(url);
  const env = { ...process.env };
  delete env.BENCH_PACE_MS;
  delete env.BENCH_STOP_AFTER;
  delete env.BENCH_STICKY_COOKIE;
  if (cookie) env.BENCH_STICKY_COOKIE = cookie;
  if (paceMs) env.BENCH_PACE_MS = String(paceMs);
  if (stopAfter) env.BENCH_STOP_AFTER = String(stopAfter);

  if (log) {
    const shown = args.map((a) => (/\s/.test(a) ? `'${a}'` : a)).join(' ');
    const vars = Object.entries(env).filter(([k]) => k.startsWith('BENCH_')).map(([k, v]) => `${k}=${v} `);
    log.write(`$ ${vars.join('')}wrk ${shown}\n`);
  }
  // `cpus`: run wrk on these CPUs only (taskset).
  const wrk = cpus
    ? new Guarded('wrk', 'taskset', ['-c', cpus, 'wrk', ...args], { env, log })
    : new Guarded('wrk', 'wrk', args, { env, log });
  try {
    if (stopAfter) {
      // wrk's main thread sleeps for the whole -d; SIGINT ends that sleep and wrk reports.
      wrk.waitForLine(/^bench-stopped$/, (seconds + 5) * 1000).then(
        () => wrk.child.kill('SIGINT'),
        () => {},
      );
    }
    const m = await wrk.waitForLine(/^bench-result (.*)$/, (seconds + 15) * 1000, 'its result line');
    await wrk.exited;
    const r = JSON.parse(m[1]);
    const errorCount = Object.values(r.errors).reduce((a, b) => a + b, 0);
    const secs = r.duration_us / 1e6;
    return {
      requests: r.requests,
      seconds: secs,
      rate: r.requests / secs,
      errors: r.errors,
      errorCount,
      latencyMs: Object.fromEntries(Object.entries(r.latency_us).map(([k, v]) => [k, v / 1000])),
      wrkCores: r.cpu_s / secs,
    };
  } finally {
    await wrk.stop(1000);
  }
}

module.exports = { runWrk };
