'use strict';
// Scenario: a worker's sends around its own disconnect. After process.disconnect() (and from
// the 'disconnect' event that cluster.worker.disconnect() leads to), process.send() and
// cluster.worker.send() return false and deliver nothing: with a callback, the callback gets
// ERR_IPC_CHANNEL_CLOSED on a later tick; without one, the worker and the process emit 'error'
// with ERR_IPC_CHANNEL_CLOSED. Never "true" with the message dropped. Right after
// cluster.worker.disconnect() the channel is still open (it closes once the primary has
// acknowledged): those sends return true and are delivered.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  // One worker per way of disconnecting, one after the other (their lines do not interleave).
  const modes = ['process.disconnect', 'worker.disconnect'];
  (function next() {
    const mode = modes.shift();
    if (!mode) return;
    const got = [];
    const w = cluster.fork({ SCENARIO_MODE: mode });
    w.on('message', (m) => got.push(m));
    w.on('exit', (code, signal) => {
      console.log(`primary: ${mode}: received ${JSON.stringify(got)}; exit ${code} ${signal} ` +
        `exitedAfterDisconnect ${w.exitedAfterDisconnect}`);
      next();
    });
  })();
} else {
  const mode = process.env.SCENARIO_MODE;
  const log = (s) => console.log(`worker: ${mode}: ${s}`);
  const seen = [];
  process.on('error', (e) => seen.push(`process 'error' ${e.code}`));
  cluster.worker.on('error', (e) => seen.push(`worker 'error' ${e.code}`));
  // The four ways to send, each reporting its return value at once and its callback later.
  const probe = (when) => {
    const cb = (what) => (err) => seen.push(`${when}: ${what} callback ${err ? err.code : null}`);
    log(`${when}: connected ${process.connected}, isConnected() ${cluster.worker.isConnected()}`);
    log(`${when}: process.send with a callback returned ${process.send(`${when} 1`, cb('process.send'))}`);
    log(`${when}: worker.send with a callback returned ${cluster.worker.send(`${when} 2`, cb('worker.send'))}`);
    log(`${when}: process.send returned ${process.send(`${when} 3`)}`);
    log(`${when}: worker.send returned ${cluster.worker.send(`${when} 4`)}`);
  };
  process.on('exit', () => log(`at exit: ${JSON.stringify(seen)}`));
  process.send('before');
  if (mode === 'process.disconnect') {
    // The worker exits on its 'disconnect' event (it did not say exitedAfterDisconnect).
    process.disconnect();
    probe('right after process.disconnect()');
  } else {
    // The channel closes once the servers are closed and the primary has acknowledged.
    cluster.worker.once('disconnect', () => {
      probe('on disconnect');
      setImmediate(() => log(`a turn later: ${JSON.stringify(seen)}`));
    });
    cluster.worker.disconnect();
    probe('right after worker.disconnect()');
  }
}
