'use strict';
// Paced `Connection: close` load in which each client waits BEFORE it connects, then connects and
// sends its request at once, as a browser or an HTTP client without a pool does. Run as a process
// of its own (bench/lib/wrk.js runPacedClose), it prints one `bench-result <json>` line in the
// format of bench/lib/wrk.lua's, so both feed the same report.
//
// Why not wrk: with `-H 'Connection: close'` and a delay() hook, wrk reconnects as soon as a
// response ends and waits the delay on the open connection, before writing the request (measured:
// 50 ms between the server's accept and the first request byte with BENCH_PACE_MS=50). Every
// connection then sits idle in a worker for the whole pause, so a scheduler that routes at accept
// (every corral policy, node:cluster) deals each request 50 ms before it is sent: a worker that
// blocks meanwhile holds the ~6 of 12 connections it was dealt in the pause, whatever the policy,
// and `least` counts idle connections as load. Latency here runs from connect() to the end of the
// response (accept and dealing included), where wrk's starts at the request write.
//
// Besides wrk's fields, `over_100ms`: how many requests took longer than 100 ms.
//
// Environment: BENCH_URL (http://127.0.0.1:<port>/), BENCH_CONNECTIONS (clients), BENCH_PACE_MS
// (each client's pause before each connection), BENCH_SECONDS (how long new requests start),
// BENCH_TIMEOUT_MS (per request, default 5000: then it counts as a timeout error).

const net = require('node:net');

const url = new URL(process.env.BENCH_URL);
const clients = Number(process.env.BENCH_CONNECTIONS);
const paceMs = Number(process.env.BENCH_PACE_MS);
const seconds = Number(process.env.BENCH_SECONDS);
const timeoutMs = Number(process.env.BENCH_TIMEOUT_MS || 5000);
for (const [name, v] of [['BENCH_CONNECTIONS', clients], ['BENCH_PACE_MS', paceMs], ['BENCH_SECONDS', seconds]]) {
  if (!(v > 0)) {
    console.error(`paced_close: ${name} must be a positive number, got ${JSON.stringify(process.env[name])}`);
    process.exit(2);
  }
}

const request = Buffer.from(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nConnection: close\r\n\r\n`);
const latencyUs = [];
const errors = { connect: 0, read: 0, write: 0, status: 0, timeout: 0 };
const start = process.hrtime.bigint();
const endAt = start + BigInt(seconds * 1e9);

/** One request on a new connection; resolves when it ended, one way or another. */
function once() {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    let connected = false;
    let head = '';
    let done = false;
    const finish = (kind) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (kind) errors[kind]++;
      else latencyUs.push(Number(process.hrtime.bigint() - t0) / 1000);
      resolve();
    };
    const sock = net.connect({ host: url.hostname, port: Number(url.port) });
    const timer = setTimeout(() => finish('timeout'), timeoutMs);
    sock.setNoDelay(true);
    sock.on('connect', () => {
      connected = true;
      sock.write(request);
    });
    sock.on('data', (b) => {
      if (head.length < 16) head += b.toString('latin1');
    });
    // The server ends the connection after its response (Connection: close).
    sock.on('end', () => finish(/^HTTP\/1\.1 200 /.test(head) ? null : head ? 'status' : 'read'));
    sock.on('error', () => finish(connected ? 'read' : 'connect'));
  });
}

async function client() {
  while (process.hrtime.bigint() < endAt) {
    await new Promise((r) => setTimeout(r, paceMs));
    if (process.hrtime.bigint() >= endAt) break;
    await once();
  }
}

function percentile(sorted, p) {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

Promise.all(Array.from({ length: clients }, client)).then(() => {
  const sorted = latencyUs.sort((a, b) => a - b);
  const r = {
    requests: sorted.length,
    duration_us: Math.round(Number(process.hrtime.bigint() - start) / 1000),
    errors,
    // The requests that waited out a stall: a count does not flip between a few ms and the
    // stall's length as p99 does when they are near 1% of the total.
    over_100ms: sorted.filter((us) => us > 100_000).length,
    latency_us: Object.fromEntries(
      [['p50', 50], ['p90', 90], ['p99', 99]].map(([k, p]) => [k, Math.round(percentile(sorted, p))]).concat([['max', Math.round(sorted.at(-1) ?? 0)]]),
    ),
  };
  process.stdout.write(`bench-result ${JSON.stringify(r)}\n`);
});
