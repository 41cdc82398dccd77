'use strict';
// kernel-rr's window with held keep-alive connections: 3 supervised HTTP workers
// (cluster.supervise, for its metrics) under cluster.schedulingPolicy = 'kernel-rr'; HELD
// keep-alive connections are opened one after the other, each asked once, and held open; then
// FRESH requests on new connections (Connection: close). Prints how the fresh ones spread,
// the connections the primary dealt (metrics().workers[].handedOff: from the anchor, under
// kernel-rr), and the corral warnings the process got (the rr fallback without CAP_BPF).
const cluster = require(process.env.CORRAL_MODULE);
const watchdog = require('./watchdog');
const http = require('node:http');
const net = require('node:net');

const HELD = Number(process.env.HELD || 200);
const FRESH = Number(process.env.FRESH || 30);

// One request on `sock`: resolves with the answering worker's id (null if it failed).
function ask(sock, keepAlive) {
  return new Promise((resolve) => {
    let data = '';
    const done = (id) => {
      sock.removeAllListeners('data');
      sock.removeAllListeners('close');
      resolve(id);
    };
    sock.setTimeout(10000, () => sock.destroy());
    sock.on('error', () => {});
    const send = () => sock.write(`GET / HTTP/1.1\r\nHost: x\r\nConnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n`);
    if (sock.connecting) sock.once('connect', send);
    else send();
    sock.on('data', (d) => {
      data += d;
      const head = data.indexOf('\r\n\r\n');
      const len = /Content-Length: (\d+)/i.exec(data);
      if (head >= 0 && len && data.length >= head + 4 + Number(len[1])) done(data.slice(head + 4, head + 4 + Number(len[1])));
    });
    sock.on('close', () => done(null));
  });
}

if (cluster.isPrimary) {
  cluster.schedulingPolicy = 'kernel-rr';
  const warnings = [];
  process.on('warning', (w) => {
    if (w.name === 'CorralWarning') warnings.push(w);
  });
  const timer = watchdog(cluster, 25000);
  const sup = cluster.supervise({ workers: 3, shutdown: { timeout: 3000 } });
  let listening = 0;
  cluster.on('listening', async (_w, address) => {
    if (++listening !== 3) return;
    const port = address.port;
    const held = [];
    let failed = 0;
    for (let i = 0; i < HELD; i++) {
      const sock = net.connect(port, '127.0.0.1');
      if ((await ask(sock, true)) === null) failed++;
      held.push(sock);
    }
    const per = {};
    for (let i = 0; i < FRESH; i++) {
      const sock = net.connect(port, '127.0.0.1');
      const id = await ask(sock, false);
      sock.destroy();
      if (id === null) failed++;
      else per[id] = (per[id] || 0) + 1;
    }
    const dealt = sup.metrics().workers.reduce((n, w) => n + w.handedOff, 0);
    for (const s of held) s.destroy();
    console.log(`policy ${cluster.schedulingPolicy}`);
    console.log(`fresh ${Object.values(per).sort().join('/')}`);
    console.log(`failed ${failed}`);
    console.log(`dealt by the primary ${dealt}`);
    for (const w of warnings) console.log(`warning ${w.code} ${w.errno} ${w.message}`);
    console.log(`warnings ${warnings.length}`);
    clearTimeout(timer);
    await sup.shutdown();
  });
} else {
  http.createServer((req, res) => res.end(String(cluster.worker.id))).listen(0, '127.0.0.1');
}
