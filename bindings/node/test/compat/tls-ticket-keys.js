'use strict';
// Scenario: TLS servers in workers share their session ticket keys, as node:cluster makes
// them (the first worker's tls.Server _getServerData() is kept for its listen key and every
// later worker's server gets it through _setServerData()), so a client resumes its session
// with a ticket whichever worker the resumed connection reaches. Under both scheduling
// policies; a second listen key gets keys of its own.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const tls = require('node:tls');

const policy = require('../compat-support/each-policy')(cluster, 'TLS_TICKET_KEYS_POLICY');
if (policy === null) return;
const log = (s) => console.log(`${policy}: ${s}`);
const WORKERS = 3;
const RESUMES = 6;

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  const keys = new Map(); // worker id -> { main, other }
  let port;
  for (let i = 0; i < WORKERS; i++) {
    const w = cluster.fork();
    w.on('message', (m) => {
      keys.set(w.id, m);
      port = m.port;
      if (keys.size === WORKERS) check();
    });
  }
  const check = async () => {
    const all = [...keys.values()];
    log(`workers with the first server's ticket keys: ${all.filter((k) => k.main === all[0].main).length} of ${WORKERS}`);
    log(`workers with the second server's ticket keys: ${all.filter((k) => k.other === all[0].other).length} of ${WORKERS}`);
    log(`second server's keys differ from the first's: ${all[0].other !== all[0].main}`);
    const ca = fs.readFileSync(path.join(__dirname, '..', 'compat-support', 'tls', 'cert.pem'));
    const connect = (session) => new Promise((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', ca, servername: 'localhost', session });
      let ticket;
      let reused;
      s.on('secureConnect', () => { reused = s.isSessionReused(); });
      s.on('session', (t) => { ticket = t; });
      // The server writes and ends: the ticket (TLS 1.3: after the handshake) came before.
      s.on('data', () => {});
      s.on('end', () => s.end());
      s.on('error', reject);
      s.on('close', () => resolve({ reused, ticket }));
    });
    const first = await connect();
    let reused = 0;
    for (let i = 0; i < RESUMES; i++) if ((await connect(first.ticket)).reused) reused++;
    log(`connections resumed with the first connection's ticket: ${reused} of ${RESUMES}`);
    cluster.disconnect();
  };
} else {
  const dir = path.join(__dirname, '..', 'compat-support', 'tls');
  const opts = { key: fs.readFileSync(path.join(dir, 'key.pem')), cert: fs.readFileSync(path.join(dir, 'cert.pem')) };
  const hash = (s) => crypto.createHash('sha256').update(s.getTicketKeys()).digest('hex');
  const main = tls.createServer(opts, (c) => c.end('hi'));
  const other = tls.createServer(opts, (c) => c.end('hi'));
  main.listen(0, '127.0.0.1', () => {
    other.listen(0, '127.0.0.1', () => {
      process.send({ port: main.address().port, main: hash(main), other: hash(other) });
    });
  });
}
