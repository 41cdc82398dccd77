'use strict';
// Scenario: server.maxConnections under round-robin. Two workers, each server with
// maxConnections = 1. A connection dealt to a worker at its limit goes back to the primary and on
// to the other worker (node:cluster's `accepted: false`); when both are full the client waits,
// neither reset nor dropped, and is served once a worker has room. No worker emits 'drop'.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const net = require('node:net');

if (cluster.isPrimary) {
  armTimeout(cluster, 20000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  cluster.schedulingPolicy = cluster.SCHED_RR;

  const workers = [cluster.fork(), cluster.fork()];
  let listening = 0;
  let port;
  for (const w of workers) {
    w.on('message', (msg) => {
      if (msg.listening) {
        port = msg.port;
        if (++listening === workers.length) run().catch((e) => {
          console.log(`primary: ${e.stack}`);
          process.exit(1);
        });
      }
    });
  }

  async function run() {
    const a = await connect(port);
    console.log(`A: served ${a.greeting !== null}`);
    // A holds its worker at the limit: every client now goes to the other one, whichever
    // worker round-robin deals it to first.
    const others = [];
    for (let i = 0; i < 4; i++) {
      const c = await connect(port);
      others.push(c.greeting);
      await c.close();
    }
    console.log(`4 clients while A is open: served ${others.every((g) => g !== null)}, ` +
      `all by the worker without A ${others.every((g) => g !== null && g !== a.greeting)}`);
    const b = await connect(port);
    console.log(`B: served by the worker without A ${b.greeting !== null && b.greeting !== a.greeting}`);
    // Both workers are full: C waits.
    const c = openClient(port);
    await sleep(300);
    console.log(`C after 300 ms with both workers full: greeting ${c.greeting !== null}, closed ${c.closed}`);
    await a.close();
    const greeting = await c.served;
    console.log(`C once A left: served by A's worker ${greeting === a.greeting}`);
    await b.close();
    await c.close();
    // Each worker's 'drop' count and the connections its server saw.
    const reports = await Promise.all(workers.map((w) => new Promise((resolve) => {
      w.once('message', resolve);
      w.send('report');
    })));
    const connections = reports.map((r) => r.connections).sort((x, y) => x - y);
    console.log(`workers: drops ${reports.map((r) => r.drops).join(' ')}, connections ${connections.join(' ')}`);
    cluster.disconnect(() => console.log('primary: disconnected'));
  }
} else {
  let drops = 0;
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.on('error', () => {});
    socket.write(`worker ${cluster.worker.id}\n`);
    socket.resume();
  });
  server.maxConnections = 1;
  server.on('drop', () => { drops++; });
  server.listen(0, '127.0.0.1', () => process.send({ listening: true, port: server.address().port }));
  process.on('message', (msg) => {
    if (msg === 'report') process.send({ drops, connections });
  });
}

// A client: resolves `served` with the first line the worker writes (its greeting), or null
// when the connection closes first.
function openClient(port) {
  const s = net.connect(port, '127.0.0.1');
  const c = { greeting: null, closed: false };
  let data = '';
  let settle;
  c.served = new Promise((resolve) => { settle = resolve; });
  const ended = new Promise((resolve) => s.on('close', resolve));
  s.setEncoding('utf8');
  s.on('error', () => {});
  s.on('data', (d) => {
    data += d;
    const nl = data.indexOf('\n');
    if (c.greeting === null && nl >= 0) {
      c.greeting = data.slice(0, nl);
      settle(c.greeting);
    }
  });
  s.on('close', () => {
    c.closed = true;
    settle(c.greeting);
  });
  // Ends the client and waits until the worker closed its side (its count went down).
  c.close = () => {
    s.end();
    return ended;
  };
  return c;
}

async function connect(port) {
  const c = openClient(port);
  await c.served;
  return c;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
