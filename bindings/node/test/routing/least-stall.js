'use strict';
// least against a worker whose event loop is stalled (bench/servers/node_hello.js BENCH_SKEW in
// small): 2 workers; a request for /stall blocks its worker's loop for STALL_MS (Atomics.wait: no
// CPU used, nothing else runs there). Once one worker is stalled, 8 clients each make requests
// in turn, pausing PACE_MS, then connecting and sending at once (bench/lib/paced_close.js), for
// the length of the stall, their starts spread over one pause. A client dealt to the stalled worker waits for the stall's end.
// Prints "stuck <clients that waited> of 8 <requests per worker>" and exits 0. A client "waited"
// when the stalled worker answered it: that worker answers nothing before its stall ends, so a
// connection it answered is one the primary left queued at it. This counts routing, not time: on
// a machine starved of CPU (load 12+) the healthy worker's answers alone took 200-450 ms, which a
// count by elapsed time mistook for a stuck client. Those slow answers are still printed.
// argv[2]: 'rr', 'least' or 'kernel-rr'. The stall check is the engine's (CORRAL_STALL_TIMEOUT_MS;
// under kernel-rr the eBPF program's).
const cluster = require(process.env.CORRAL_MODULE);
const http = require('node:http');
const net = require('node:net');

const WORKERS = 2;
const CLIENTS = 8;
const STALL_MS = 600;
// PACE_MS in the environment: kernel-rr's test asks slower (it cannot take back what it dealt).
const PACE_MS = Number(process.env.PACE_MS || 20);
// A client stops asking once an answer took this long (it waited for the stall's end, or the
// machine is starved); taken back from the stalled worker's channel after 25 ms
// (CORRAL_STALL_TIMEOUT_MS=0: never) and dealt again, an answer takes far less.
const SLOW_MS = 200;

if (cluster.isPrimary) {
  setTimeout(() => {
    console.log('timed out');
    process.exit(1);
  }, 25_000).unref();
  cluster.schedulingPolicy = { rr: cluster.SCHED_RR, least: cluster.SCHED_LEAST, 'kernel-rr': 'kernel-rr' }[process.argv[2]];
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  let listening = 0;
  cluster.on('listening', (_w, address) => {
    if (++listening === WORKERS) {
      run(address.port).catch((e) => {
        console.log(`failed: ${e.stack}`);
        process.exit(1);
      });
    }
  });
} else {
  const stall = new Int32Array(new SharedArrayBuffer(4));
  // HTTP, as the bench's server: the worker closes its side once the answer is written, so the
  // close report does not wait for the client's FIN.
  http.createServer((req, res) => {
    if (req.url === '/stall') Atomics.wait(stall, 0, 0, STALL_MS);
    res.end(`${cluster.worker.id}\n`);
  }).listen(0, '127.0.0.1');
}

function ask(port, what) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const c = net.connect(port, '127.0.0.1', () => c.write(`GET /${what} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let out = '';
    c.on('data', (d) => (out += d));
    c.on('end', () => resolve({ worker: out.split('\r\n\r\n')[1]?.trim(), ms: Date.now() - t0 }));
    c.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function run(port) {
  // Both workers serve first (each has closed a connection), as in a server under load.
  for (let i = 0; i < 10; i++) await ask(port, 'hi');
  const stalled = ask(port, 'stall');
  await sleep(50); // dealt and read: that worker's loop is blocked now
  const until = Date.now() + STALL_MS - 150;
  const per = {};
  const slow = [];
  const answeredBy = await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
    // Spread over the pause, as clients in a steady state are: 8 connecting at the same moment
    // would be a burst, which least splits by the counts (the stalled worker's share included).
    await sleep((i * PACE_MS) / CLIENTS);
    const workers = new Set();
    while (Date.now() < until) {
      await sleep(PACE_MS);
      const r = await ask(port, 'hi');
      per[r.worker] = (per[r.worker] || 0) + 1;
      workers.add(r.worker);
      if (r.ms > SLOW_MS) {
        slow.push(`${r.worker}:${r.ms}ms`);
        break; // it waited for the stall's end, or the machine is starved: stop asking
      }
    }
    return workers;
  }));
  const s = await stalled;
  const stuck = answeredBy.filter((workers) => workers.has(s.worker)).length;
  console.log(`stuck ${stuck} of ${CLIENTS} ${JSON.stringify(per)} stalled worker ${s.worker} (${s.ms} ms); slow: ${slow.join(' ') || 'none'}`);
  cluster.disconnect();
}
