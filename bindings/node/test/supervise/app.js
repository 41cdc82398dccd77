'use strict';
// A supervised cluster for test/supervise.test.js. The scenario comes from argv[2]; workers
// read WORKER_MODE (set by the scenario for the generation it wants to break).
const cluster = require(process.env.CORRAL_MODULE);
const http = require('http');

const scenario = process.argv[2];
const out = (...a) => console.log(...a);
setTimeout(() => {
  out('TIMEOUT');
  process.exit(99);
}, 25000).unref();

function get(port) {
  return new Promise((resolve) => {
    http
      .get({ port, host: '127.0.0.1', agent: false, path: '/' }, (r) => {
        r.resume();
        r.on('end', () => resolve(r.statusCode === 200));
      })
      .on('error', () => resolve(false));
  });
}

function waitListening(n) {
  return new Promise((resolve) => {
    let seen = 0;
    cluster.on('listening', function on(w, a) {
      if (++seen === n) {
        cluster.off('listening', on);
        resolve(a.port);
      }
    });
  });
}

async function primary() {
  const base = { restart: { initialDelay: 50, maxDelay: 400, jitter: 0 }, shutdown: { timeout: 3000 } };
  if (scenario === 'reload') {
    const sup = cluster.supervise({ ...base, workers: 2, reload: { probation: 200 } });
    const port = await waitListening(2);
    const before = Object.keys(cluster.workers).join(',');
    let sent = 0;
    let failed = 0;
    let stop = false;
    const load = (async () => {
      while (!stop && sent < 20000) {
        sent++;
        if (!(await get(port))) failed++;
      }
    })();
    const report = await sup.reload();
    await new Promise((r) => setTimeout(r, 200));
    stop = true;
    await load;
    const after = Object.keys(cluster.workers).join(',');
    out(`reload ok=${report.ok} replaced=${report.replaced} workers ${before} -> ${after}`);
    out(`load ran=${sent > 20} failed=${failed}`);
    await sup.reload().then((r) => out(`second reload ok=${r.ok}`));
    out(`shutdown clean=${(await sup.shutdown()).clean}`);
  } else if (scenario === 'rollback') {
    const sup = cluster.supervise({ ...base, workers: 2, reload: { probation: 500 } });
    const port = await waitListening(2);
    const before = Object.keys(cluster.workers).join(',');
    process.env.WORKER_MODE = 'crash-soon'; // the "new code" crashes after it listens
    cluster.setupPrimary({}); // (settings unchanged: env is read at spawn)
    const report = await sup.reload();
    out(`reload ok=${report.ok} replaced=${report.replaced} reason=${/exited with code 1/.test(report.reason)}`);
    delete process.env.WORKER_MODE;
    out(`old workers serve=${await get(port)} same=${Object.keys(cluster.workers).join(',') === before}`);
    out(`shutdown clean=${(await sup.shutdown()).clean}`);
  } else if (scenario === 'crashloop') {
    process.env.WORKER_MODE = 'exit-now';
    const sup = cluster.supervise({ ...base, workers: 1, restart: { ...base.restart, crashLoop: { exits: 3, window: 10000 }, maxDelay: 5000 } });
    const delays = [];
    const shapes = [];
    sup.on('restart', (e) => {
      delays.push(`${e.cause.type}:${e.delay}`);
      shapes.push(JSON.stringify(e));
    });
    const loop = await new Promise((r) => sup.once('crashloop', r));
    out(`crashloop slot=${loop.slot} exits=${loop.exits.map((e) => e.code).join(',')}`);
    out(`restarts ${delays.join(' ')}`);
    // The events' exact shapes (own keys, their order, nulls).
    out(`first restart ${shapes[0]}`);
    out(`crashloop event ${JSON.stringify(loop)}`);
    out(`shutdown clean=${(await sup.shutdown()).clean}`);
  } else if (scenario === 'norestart') {
    process.env.WORKER_MODE = 'exit-78';
    const sup = cluster.supervise({ ...base, workers: 1, restart: { ...base.restart, noRestartExitCodes: [78] } });
    let restarts = 0;
    sup.on('restart', () => restarts++);
    const e = await new Promise((r) => sup.once('norestart', r));
    await new Promise((r) => setTimeout(r, 400));
    out(`norestart code=${e.exit.code} restarts=${restarts}`);
    out(`shutdown clean=${(await sup.shutdown()).clean}`);
  } else if (scenario === 'hang') {
    process.env.WORKER_MODE = 'block-loop';
    const sup = cluster.supervise({ ...base, workers: 1, heartbeat: { interval: 50, timeout: 400 } });
    const t0 = Date.now();
    const e = await new Promise((r) => sup.once('hang', r));
    out(`hang slot=${e.slot} silentFor>=400=${e.silentFor >= 400} detected<3s=${Date.now() - t0 < 3000}`);
    delete process.env.WORKER_MODE;
    const r = await new Promise((res) => sup.once('restart', res));
    out(`restart cause=${r.cause.type}`);
    out(`shutdown clean=${(await sup.shutdown()).clean}`);
  } else if (scenario === 'metrics') {
    const sup = cluster.supervise({ ...base, workers: 2, metrics: { port: 0 }, heartbeat: { interval: 50, timeout: 2000 } });
    await waitListening(2);
    await new Promise((r) => setTimeout(r, 700));
    const m = sup.metrics();
    out(`metrics workers=${m.workers.length} states=${m.workers.map((w) => w.state).join(',')} rss>0=${m.workers.every((w) => w.rss > 0)}`);
    const [host, port] = m.endpoint.split(':');
    const text = await new Promise((resolve) => {
      http.get({ host, port: Number(port), path: '/metrics', agent: false }, (r) => {
        let b = '';
        r.on('data', (d) => (b += d));
        r.on('end', () => resolve(b));
      });
    });
    const ok = text
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .every((l) => /^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+$/.test(l));
    out(`prometheus parses=${ok} has_info=${text.includes('corral_worker_info{slot="1"')}`);
    out(`shutdown clean=${(await sup.shutdown()).clean}`);
  } else if (scenario === 'sigterm') {
    cluster.supervise({ ...base, workers: 2, shutdown: { signals: ['SIGTERM'], timeout: 3000 } });
    const port = await waitListening(2);
    const slow = new Promise((resolve) => {
      http.get({ port, host: '127.0.0.1', agent: false, path: '/slow' }, (r) => {
        let b = '';
        r.on('data', (d) => (b += d));
        r.on('end', () => resolve(b));
      });
    });
    await new Promise((r) => setTimeout(r, 100));
    process.on('exit', (code) => out(`primary exit ${code}`));
    process.kill(process.pid, 'SIGTERM');
    out(`slow request finished: ${await slow}`);
  } else if (scenario === 'stdio') {
    // Workers the supervisor starts get the stdio of setupPrimary too: an extra duplex pipe.
    cluster.setupPrimary({ stdio: [0, 1, 2, 'ipc', 'pipe'] });
    process.env.WORKER_MODE = 'echo-fd4';
    const sup = cluster.supervise({ ...base, workers: 1 });
    await waitListening(1);
    const w = Object.values(cluster.workers)[0];
    const s = w.process.stdio;
    out(`stdio length=${s.length} fd4 readable=${s[4].readable} writable=${s[4].writable}`);
    let answer = '';
    s[4].setEncoding('utf8').on('data', (d) => (answer += d));
    const ended = new Promise((r) => s[4].on('end', r));
    s[4].end('ping');
    await ended;
    out(`fd4 answer=${answer}`);
    out(`shutdown clean=${(await sup.shutdown()).clean}`);
  } else if (scenario === 'invalid') {
    for (const o of [
      { workers: 0 }, { restart: { bogus: 1 } }, { restart: { initialDelay: -5 } }, { reload: { batch: 0 } },
      { heartbeat: { interval: 100, timeout: 50 } },
      // Ranges the engine enforces for both fronts (these used to abort or kill the engine).
      { workers: 1e9 }, { restart: { factor: 1e300 } }, { restart: { maxDelay: 1e300 } },
      { shutdown: { timeout: 8 * 24 * 3600e3 } }, { reload: { batch: 5000 } },
      { metrics: { host: 'nowhere' } },
    ]) {
      try {
        cluster.supervise(o);
        out('accepted', JSON.stringify(o));
      } catch (e) {
        // `option` names the option whichever side refused it (JS or the engine).
        out(`${e.code} ${e.constructor.name} option=${e.option}: ${e.message}`);
      }
    }
  }
}

function worker() {
  const mode = process.env.WORKER_MODE;
  if (mode === 'exit-now') process.exit(3);
  if (mode === 'exit-78') process.exit(78);
  if (mode === 'echo-fd4') {
    const s = new (require('net').Socket)({ fd: 4, readable: true, writable: true });
    let got = '';
    s.setEncoding('utf8').on('data', (d) => (got += d)).on('end', () => s.end(`pong ${got}`));
  }
  const server = http.createServer((req, res) => {
    if (req.url === '/slow') setTimeout(() => res.end('done'), 400);
    else res.end('hi');
  });
  server.listen(0, '127.0.0.1', () => {
    if (mode === 'crash-soon') setTimeout(() => process.exit(1), 100);
    if (mode === 'block-loop') setTimeout(() => { for (;;); }, 200);
  });
}

if (cluster.isPrimary) primary();
else worker();
