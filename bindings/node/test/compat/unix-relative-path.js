'use strict';
// Scenario: Unix sockets named by a relative path, under both scheduling policies (the scenario
// runs itself once with SCHED_RR, then once with SCHED_NONE, and prints both runs in order).
// The primary works in a directory whose absolute path is longer than sun_path (107 bytes).
//   - Two workers (started there) listen on 's.sock': they share one socket, bound in that
//     directory although its absolute form does not fit sun_path; the primary connects to it
//     by the relative name. 'listening' carries the absolute path, as node:cluster's worker
//     resolves the name against its own cwd before asking the primary.
//   - A third worker started in another directory (setupPrimary({ cwd })) listens on 'w.sock':
//     the file is in the worker's directory, not the primary's.
//   - The file stays while one worker still listens, and is removed when the last one leaves
//     (disconnects, or is killed: corral keeps a listener whose last worker died open for
//     CORRAL_ORPHAN_LISTENER_GRACE_MS, so a replacement can take over; set to 0 here, the
//     behaviour of node:cluster, which ignores the variable).
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const POLICY = require('../compat-support/each-policy')(cluster, 'UNIX_PATH_POLICY');

if (POLICY === null) {
  // The driver ran one cluster per policy.
} else if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.env.CORRAL_ORPHAN_LISTENER_GRACE_MS = '0';
  const out = (line) => console.log(`${POLICY}: ${line}`);
  const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'corral-compat-')));
  const here = process.cwd();
  process.on('exit', () => {
    process.chdir(here);
    fs.rmSync(tmp, { recursive: true, force: true });
  });
  const deep = path.join(tmp, 'd'.repeat(60), 'e'.repeat(60));
  const other = path.join(tmp, 'other');
  fs.mkdirSync(deep, { recursive: true });
  fs.mkdirSync(other);
  process.chdir(deep);
  const hide = (s) => (typeof s === 'string' ? s.replace(tmp, '<tmp>') : s);
  out(`absolute path of s.sock longer than sun_path: ${path.join(deep, 's.sock').length > 107}`);

  const listening = [];
  cluster.on('listening', (w, a) => listening.push(`worker ${w.id} ${a.addressType} ${hide(a.address)} ${a.port}`));
  const ready = (w) => new Promise((resolve) => w.once('message', resolve));
  const gone = (w) => new Promise((resolve) => w.once('exit', resolve));

  (async () => {
    const w1 = cluster.fork({ SOCK: 's.sock' });
    const r1 = await ready(w1);
    const w2 = cluster.fork({ SOCK: 's.sock' });
    const r2 = await ready(w2);
    out(`server.address() in the workers: ${JSON.stringify(r1)} ${JSON.stringify(r2)}`);
    out(`s.sock in the primary's directory: ${fs.statSync(path.join(deep, 's.sock')).isSocket()}`);
    out(`connect s.sock -> ${await roundTrip('s.sock')}`);

    cluster.setupPrimary({ cwd: other });
    const w3 = cluster.fork({ SOCK: 'w.sock' });
    await ready(w3);
    out(`w.sock in the worker's directory ${fs.existsSync(path.join(other, 'w.sock'))}, ` +
      `in the primary's ${fs.existsSync(path.join(deep, 'w.sock'))}`);
    out(`connect ../../other/w.sock -> ${await roundTrip('../../other/w.sock')}`);

    w1.disconnect();
    await gone(w1);
    out(`one of two workers left: s.sock exists ${fs.existsSync('s.sock')}, connect -> ${await roundTrip('s.sock')}`);
    w2.disconnect();
    await gone(w2);
    out(`last worker left: s.sock removed ${await removed(path.join(deep, 's.sock'))}`);
    w3.kill();
    await gone(w3);
    out(`w.sock's worker killed: w.sock removed ${await removed(path.join(other, 'w.sock'))}`);
    // Last: a worker's 'listening' can reach the primary after its own message.
    for (const line of listening.sort()) out(`'listening' ${line}`);
  })();
} else {
  const server = net.createServer((c) => c.end(`hello from worker ${cluster.worker.id}`));
  server.listen(process.env.SOCK, () => process.send(server.address()));
}

// Whether `file` is gone, waiting up to 2 s: the primary removes it when it learns that the
// worker left, which may come after the 'exit' event.
async function removed(file) {
  for (let i = 0; i < 100 && fs.existsSync(file); i++) await new Promise((r) => setTimeout(r, 20));
  return !fs.existsSync(file);
}

function roundTrip(where) {
  return new Promise((resolve) => {
    const sock = net.connect(where);
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => { data += d; });
    sock.on('end', () => resolve(data.replace(/worker \d+/, 'worker N')));
    sock.on('error', (err) => resolve(err.code));
  });
}
