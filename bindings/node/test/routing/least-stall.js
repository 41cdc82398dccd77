'use strict';
// least against a worker whose event loop is stalled (bench/servers/node_hello.js BENCH_SKEW in
// small): 2 workers; a request for /stall blocks its worker's loop for STALL_MS (Atomics.wait: no
// CPU used, nothing else runs there). Once one worker is stalled, 8 clients each make requests
// in turn, pausing PACE_MS, then connecting and sending at once (bench/lib/paced_close.js), for
// the length of the stall, their starts spread over one pause. A client dealt to the stalled worker waits for the stall's end.
// Prints "stuck <clients that waited> of 8 <requests per worker>" and exits 0.
// argv[2]: 'rr' or 'least'. The stall check is the engine's (CORRAL_STALL_TIMEOUT_MS).
const cluster = require(process.env.CORRAL_MODULE);
const http = require('node:http');
const net = require('node:net');

const WORKERS = 2;
const CLIENTS = 8;
const STALL_MS = 600;
const PACE_MS = 20;
// Waited for the stall's end, or for the primary to take the connection back from the stalled
// worker's channel (after 25 ms; CORRAL_STALL_TIMEOUT_MS=0: never) and deal it again; a
// healthy answer on a loaded machine took up to ~150 ms.
const STUCK_MS = 200;

if (cluster.isPrimary) {
  setTimeout(() => {
    console.log('timed out');
    process.exit(1);
  }, 25_000).unref();
  cluster.schedulingPolicy = process.argv[2] === 'rr' ? cluster.SCHED_RR : cluster.SCHED_LEAST;
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
  let stuck = 0;
  const slow = [];
  await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
    // Spread over the pause, as clients in a steady state are: 8 connecting at the same moment
    // would be a burst, which least splits by the counts (the stalled worker's share included).
    await sleep((i * PACE_MS) / CLIENTS);
    while (Date.now() < until) {
      await sleep(PACE_MS);
      const r = await ask(port, 'hi');
      per[r.worker] = (per[r.worker] || 0) + 1;
      if (r.ms > STUCK_MS) {
        slow.push(`${r.worker}:${r.ms}ms`);
        stuck++;
        break; // it waited for the stall's end: the stall is over
      }
    }
  }));
  const s = await stalled;
  console.log(`stuck ${stuck} of ${CLIENTS} ${JSON.stringify(per)} stalled worker ${s.worker} (${s.ms} ms); slow: ${slow.join(' ') || 'none'}`);
  cluster.disconnect();
}
