#!/usr/bin/env node
'use strict';
// Requests lost when workers are SIGKILLed under load, corral against node:cluster in one run.
//
//   node bench/chaos.js [--rounds N] [--seconds S] [--every MS] [--clients C]
//
// Each round starts bench/servers/node_respawn.js (4 workers, restarted on exit) once per
// configuration, in alternating order, and runs C clients sending `Connection: close` requests
// back to back for S seconds while one worker is SIGKILLed every MS milliseconds (the two
// newest workers in turn). A request fails when it gets an error (reset, refused) or no
// answer within 3 s (a connection leaked by the server). Prints a table of failures per
// configuration with the median over rounds; `--json` prints the raw rounds.
//
// Only pids the server printed and that are its descendants are killed; every process is
// stopped at the end (bench/lib/guard.js).

const http = require('node:http');
const path = require('node:path');
const { Guarded, stopAll, sleep } = require('./lib/guard');
const { median } = require('./lib/stats');

const ROOT = path.resolve(__dirname, '..');
const SERVER = path.join(__dirname, 'servers', 'node_respawn.js');
const CORRAL = path.join(ROOT, 'bindings', 'node', 'index.js');
// kernel-rr needs CAP_BPF: without it corral runs rr for the address and warns (the row then
// repeats corral rr's figures; the server's stderr says so).
const CONFIGS = [
  { name: 'node:cluster rr', env: { NODE_CLUSTER_SCHED_POLICY: 'rr' } },
  { name: 'node:cluster none', env: { NODE_CLUSTER_SCHED_POLICY: 'none' } },
  { name: 'corral rr', env: { BENCH_CLUSTER_MODULE: CORRAL, CORRAL_SCHED_POLICY: 'rr' } },
  { name: 'corral kernel-rr', env: { BENCH_CLUSTER_MODULE: CORRAL, CORRAL_SCHED_POLICY: 'kernel-rr' } },
];

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}

const ROUNDS = arg('rounds', 3);
const SECONDS = arg('seconds', 4);
const EVERY = arg('every', 200);
const CLIENTS = arg('clients', 16);
const TIMEOUT = 3000;

function request(port) {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const req = http.get({ host: '127.0.0.1', port, agent: false, headers: { Connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode === 200 ? 'ok' : `status ${res.statusCode}`));
      res.on('error', (e) => done(e.code || e.message));
    });
    req.setTimeout(TIMEOUT, () => {
      done('timeout');
      req.destroy();
    });
    req.on('error', (e) => done(e.code || e.message));
  });
}

async function round(config) {
  const env = { ...process.env, ...config.env };
  delete env.NODE_OPTIONS;
  const server = new Guarded(config.name, process.execPath, [SERVER], { env });
  try {
    const port = Number((await server.waitForLine(/^listening (\d+)$/, 10000, 'listening'))[1]);
    await server.waitForLine(/^worker \d+$/, 10000, 'a worker', 1);
    const end = Date.now() + SECONDS * 1000;
    const outcomes = new Map();
    const count = (r) => outcomes.set(r, (outcomes.get(r) || 0) + 1);
    const clients = Array.from({ length: CLIENTS }, async () => {
      // Bounded by time and by count.
      for (let i = 0; i < 1e6 && Date.now() < end; i++) count(await request(port));
    });
    let kills = 0;
    const killer = (async () => {
      while (Date.now() < end - EVERY) {
        await sleep(EVERY);
        const pids = server.lines.filter((l) => /^worker \d+$/.test(l)).map((l) => Number(l.split(' ')[1]));
        const mine = new Set(server.tree());
        const live = pids.filter((p) => mine.has(p));
        if (!live.length) continue;
        const victim = live[kills % live.length];
        try {
          process.kill(victim, 'SIGKILL');
          kills++;
        } catch {
          // it exited meanwhile
        }
      }
    })();
    await Promise.all([...clients, killer]);
    const ok = outcomes.get('ok') || 0;
    outcomes.delete('ok');
    const failed = [...outcomes.values()].reduce((a, b) => a + b, 0);
    return { config: config.name, ok, failed, kills, errors: Object.fromEntries(outcomes) };
  } finally {
    await server.stop(5000);
  }
}

async function main() {
  const rounds = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [...CONFIGS].reverse() : CONFIGS;
    for (const c of order) {
      const res = await round(c);
      rounds.push(res);
      process.stderr.write(`round ${r + 1} ${c.name}: ${JSON.stringify(res)}\n`);
    }
  }
  if (process.argv.includes('--json')) {
    console.log(JSON.stringify(rounds, null, 2));
    return;
  }
  console.log(`SIGKILL of a worker every ${EVERY} ms, ${CLIENTS} clients, Connection: close, ${SECONDS} s, ${ROUNDS} rounds`);
  console.log('');
  console.log('| configuration | failed (median) | failed per round | per kill | requests ok (median) | errors |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const c of CONFIGS) {
    const rs = rounds.filter((x) => x.config === c.name);
    const errors = {};
    for (const x of rs) for (const [k, v] of Object.entries(x.errors)) errors[k] = (errors[k] || 0) + v;
    const perKill = median(rs.map((x) => x.failed / Math.max(1, x.kills)));
    console.log(
      `| ${c.name} | ${median(rs.map((x) => x.failed))} | ${rs.map((x) => x.failed).join(', ')} | ${perKill.toFixed(2)} | ${median(rs.map((x) => x.ok))} | ${JSON.stringify(errors)} |`,
    );
  }
}

main()
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => stopAll());
