'use strict';
// HTTP workers under cluster.schedulingPolicy = POLICY (default 'kernel-least'), two modes:
//
// MODE=held: 3 workers; six keep-alive connections are opened one after the other and held,
//   each asked once which worker it reached; then the two of the first worker are closed and
//   two more opened. Prints how the six spread and where the two new ones went.
// MODE=kill: 3 workers busy 2 ms per request; 16 clients send requests (Connection: close)
//   back to back for 2 s; a worker is SIGKILLed at 0.5 s and 1.2 s and replaced. Prints the
//   requests served, failed and the kills.
// Then the corral warnings the process got (the fallback without CAP_BPF).
const cluster = require(process.env.CORRAL_MODULE);
const http = require('node:http');
const net = require('node:net');

const MODE = process.env.MODE || 'held';
if (cluster.isPrimary) {
  cluster.schedulingPolicy = process.env.POLICY || 'kernel-least';
  const warnings = [];
  process.on('warning', (w) => {
    if (w.name === 'CorralWarning') warnings.push(w);
  });
  const timer = setTimeout(() => {
    console.log('TIMEOUT');
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
    process.exit(99);
  }, 25000);
  // One request on a raw socket: resolves with the answering worker's id (null if it
  // failed) and the socket (left open when keepAlive).
  const request = (port, keepAlive, sock = net.connect(port, '127.0.0.1')) =>
    new Promise((resolve) => {
      let data = '';
      const done = (id) => {
        sock.removeAllListeners('data');
        resolve({ id, sock });
      };
      sock.setTimeout(10000, () => sock.destroy());
      const ask = () => sock.write(`GET / HTTP/1.1\r\nHost: x\r\nConnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n`);
      if (sock.connecting) sock.once('connect', ask);
      else ask();
      sock.on('data', (d) => {
        data += d;
        const head = data.indexOf('\r\n\r\n');
        const len = /Content-Length: (\d+)/i.exec(data);
        if (keepAlive && head >= 0 && len && data.length >= head + 4 + Number(len[1])) {
          done(data.slice(head + 4, head + 4 + Number(len[1])));
        }
      });
      sock.on('error', () => {});
      sock.on('close', () => {
        if (keepAlive) return done(null);
        done(data.startsWith('HTTP/1.1 200') ? data.slice(data.indexOf('\r\n\r\n') + 4) : null);
      });
    });
  const finish = (lines) => {
    console.log(`policy ${cluster.schedulingPolicy}`);
    for (const l of lines) console.log(l);
    for (const w of warnings) console.log(`warning ${w.code} ${w.errno} ${w.message}`);
    console.log(`warnings ${warnings.length}`);
    clearTimeout(timer);
    cluster.removeAllListeners('exit');
    cluster.disconnect();
  };
  for (let i = 1; i <= 3; i++) cluster.fork();
  let listening = 0;
  cluster.on('listening', async (_w, address) => {
    if (++listening !== 3) return; // replacements listen too, later
    const port = address.port;
    if (MODE === 'held') {
      const held = [];
      for (let i = 0; i < 6; i++) held.push(await request(port, true));
      const spread = {};
      for (const h of held) spread[h.id] = (spread[h.id] || 0) + 1;
      const freed = held[0].id;
      for (const h of held.filter((x) => x.id === freed)) h.sock.destroy();
      // The worker sees both closes and releases them.
      await new Promise((r) => setTimeout(r, 300));
      const next = [];
      for (let i = 0; i < 2; i++) {
        const r = await request(port, true);
        held.push(r);
        next.push(r.id === freed ? 'freed' : `other ${r.id}`);
      }
      for (const h of held) h.sock.destroy();
      finish([`spread ${Object.values(spread).sort().join('/')}`, `next ${next.join(',')}`]);
      return;
    }
    let stop = false;
    let ok = 0;
    let failed = 0;
    const client = async () => {
      for (let n = 0; n < 100000 && !stop; n++) {
        if ((await request(port, false)).id === null) failed++;
        else ok++;
      }
    };
    cluster.on('exit', () => cluster.fork());
    let kills = 0;
    const kill = () => {
      const w = Object.values(cluster.workers).find((x) => x.state === 'listening');
      if (w) {
        w.process.kill('SIGKILL');
        kills++;
      }
    };
    setTimeout(kill, 500);
    setTimeout(kill, 1200);
    setTimeout(() => (stop = true), 2000);
    await Promise.all(Array.from({ length: 16 }, client));
    finish([`served ${ok}`, `failed ${failed}`, `kills ${kills}`]);
  });
} else {
  // CPU-bound service: the worker's loop is busy SERVE_MS per request.
  const ms = MODE === 'kill' ? 2 : 0;
  http
    .createServer((req, res) => {
      const until = Date.now() + ms;
      while (Date.now() < until);
      res.end(String(cluster.worker.id));
    })
    .listen(0, '127.0.0.1');
}
