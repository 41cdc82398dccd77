'use strict';
// Scenario: listen() options reach the listener, under both scheduling policies (the scenario
// runs itself once with SCHED_RR, then once with SCHED_NONE, and prints both runs in order).
// Two workers, the second forked once the first listens, each listen on:
//   A  { host: '::', port, ipv6Only: true, backlog } on a port the primary holds an IPv4
//      listener on (0.0.0.0): IPV6_V6ONLY lets both coexist; the listen backlog is the worker's
//      (ss shows it as Send-Q of a listening socket). (The other way round, IPv4 on the port of
//      a v6-only listen(0), is not deterministic: the kernel may pick a port that some other
//      process holds on 127.0.0.1.)
//   B  { path, readableAll: true, writableAll: true }: the file is readable and writable by all.
//   C  (0, '127.0.0.1') with no backlog: Node's default, 511.
// Worker 1 asks A with backlog 7, worker 2 with backlog 9 and without ipv6Only: as in
// node:cluster the options are not part of the listener's key, so worker 2 joins worker 1's
// listener as it is (still IPv6-only). The backlog then differs by policy: under SCHED_NONE every
// worker listen()s again on the shared socket with its own backlog (the last one wins), under
// SCHED_RR the primary's socket keeps the first worker's.
// node:cluster applies readableAll/writableAll only under SCHED_RR (its SCHED_NONE path drops
// them); corral applies them under both, so the SCHED_NONE run leaves the mode out of the
// comparison (compat.test.js checks corral's in a test of its own).
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout, allExited } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const POLICY = require('../compat-support/each-policy')(cluster, 'LISTEN_OPTIONS_POLICY');

if (POLICY === null) {
  // The driver ran one cluster per policy.
} else if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.umask(0o022); // the socket file's mode before readableAll/writableAll (workers inherit it)
  const out = (line) => console.log(`${POLICY}: ${line}`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-compat-'));
  process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const sock = path.join(tmp, 'b.sock');
  const printMode = POLICY === 'rr' || process.env.LISTEN_OPTIONS_PRINT_MODE === '1';

  const v4 = net.createServer();
  v4.listen({ port: 0, host: '0.0.0.0', exclusive: true }, () => {
    const port = v4.address().port;
    const w1 = cluster.fork({ SOCK: sock, BACKLOG: '7', IPV6ONLY: '1', A_PORT: String(port) });
    w1.once('message', (r1) => {
      const w2 = cluster.fork({ SOCK: sock, BACKLOG: '9', IPV6ONLY: '0', A_PORT: String(port) });
      w2.once('message', (r2) => check(port, r1, r2));
    });
  });

  async function check(port, r1, r2) {
    if (r1.error || r2.error) {
      out(`listen failed: worker 1 ${r1.error}, worker 2 ${r2.error}`);
      v4.close();
      cluster.disconnect();
      return;
    }
    out(`both workers on the same ports: A ${r1.a === r2.a && r1.a === port}, C ${r1.c === r2.c}`);
    out(`A: ${listenLine(r1.a)}`);
    await new Promise((resolve) => v4.close(resolve));
    out(`C: ${listenLine(r1.c)}`);
    const st = fs.statSync(sock);
    out(`B: is a socket ${st.isSocket()}`);
    // The whole mode: libuv up to 1.50 (Node 20) adds the bits to what the umask (022 here)
    // left, 1.51 on (Node 22.23, 24, 26) sets exactly them (expected/listen-options.node20.txt).
    if (printMode) out(`B: mode ${(st.mode & 0o7777).toString(8)}`);
    out(`B: connect -> ${await roundTrip(sock)}`);
    cluster.disconnect(async () => {
      await allExited(cluster);
      out(`after cluster.disconnect: B exists ${fs.existsSync(sock)}, ` +
        `A port for IPv6-only [::] ${await tryListen(r1.a, '::', true)}`);
    });
  }
} else {
  const backlog = Number(process.env.BACKLOG);
  const ipv6Only = process.env.IPV6ONLY === '1';
  const a = net.createServer((c) => c.end('A'));
  const b = net.createServer((c) => c.end('B'));
  const c = net.createServer((c) => c.end('C'));
  let ready = 0;
  const done = () => {
    if (++ready === 3) process.send({ a: a.address().port, c: c.address().port });
  };
  a.on('error', (err) => process.send({ error: `A: ${err.code}` }));
  a.listen({ host: '::', port: Number(process.env.A_PORT), ipv6Only, backlog }, done);
  b.listen({ path: process.env.SOCK, readableAll: true, writableAll: true }, done);
  c.listen(0, '127.0.0.1', done);
}

// "<Send-Q> <local address>" of the listening sockets on `port`, from ss (for a listening
// socket Send-Q is the backlog it was given).
function listenLine(port) {
  const text = execFileSync('ss', ['-H', '-l', '-t', '-n', `sport = :${port}`], { encoding: 'utf8' });
  return text.trim().split('\n').map((l) => {
    const cols = l.trim().split(/\s+/);
    return `backlog ${cols[2]} on ${cols[3].replace(`:${port}`, ':<port>')}`;
  }).sort().join(' | ');
}

function tryListen(port, host, ipv6Only = false) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (err) => resolve(err.code));
    s.listen({ port, host, ipv6Only, exclusive: true }, () => s.close(() => resolve('free')));
  });
}

function roundTrip(where) {
  return new Promise((resolve) => {
    const sock = net.connect(where);
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (d) => { data += d; });
    sock.on('end', () => resolve(data));
    sock.on('error', (err) => resolve(err.code));
  });
}
