'use strict';
// Scenario: the order of a worker's own disconnect. After cluster.worker.disconnect() (or
// cluster.worker.kill()) the worker tells the primary exitedAfterDisconnect and closes its
// channel only once the primary has acknowledged: right after the call it is still connected,
// and 'disconnect' comes after a process.nextTick and a setImmediate queued right after the
// call (the round trip needs at least one more turn of the loop). The primary's 'disconnect'
// and 'exit' both see exitedAfterDisconnect true; the worker exits with code 0.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  // One worker per mode, one after the other (their lines do not interleave). The worker prints
  // its lines when it exits; the primary prints its lines once the worker has both disconnected
  // and exited.
  const modes = [
    'disconnect() at the start',
    'disconnect() on a message',
    'disconnect() on a message, listening',
    'kill() on a message',
  ];
  (function next() {
    const mode = modes.shift();
    if (!mode) return;
    const w = cluster.fork({ SCENARIO_MODE: mode });
    // The worker acts on this message: in the poll phase of its loop, so that its
    // setImmediate() runs before the primary's answer can be read.
    if (mode.endsWith('listening')) w.on('listening', () => w.send('go'));
    else if (mode.includes('on a message')) w.on('online', () => w.send('go'));
    let disconnect;
    let exit;
    const done = () => {
      if (!disconnect || !exit) return;
      console.log(`${mode}: primary: ${disconnect}`);
      console.log(`${mode}: primary: ${exit}`);
      next();
    };
    w.on('disconnect', () => {
      disconnect = `'disconnect', exitedAfterDisconnect ${w.exitedAfterDisconnect}`;
      done();
    });
    w.on('exit', (code, signal) => {
      exit = `'exit' ${code} ${signal}, exitedAfterDisconnect ${w.exitedAfterDisconnect}`;
      done();
    });
  })();
} else {
  const mode = process.env.SCENARIO_MODE;
  const order = [];
  const state = () => `connected ${process.connected}, exitedAfterDisconnect ${cluster.worker.exitedAfterDisconnect}`;
  process.on('exit', (code) => {
    for (const line of order) console.log(`${mode}: worker: ${line}`);
    console.log(`${mode}: worker: exit ${code}`);
  });
  cluster.worker.on('disconnect', () => order.push(`'disconnect': ${state()}`));
  const act = (withImmediate) => {
    if (mode.startsWith('kill()')) cluster.worker.kill();
    else cluster.worker.disconnect();
    order.push(`right after the call: ${state()}`);
    process.nextTick(() => order.push(`process.nextTick queued after the call: ${state()}`));
    if (withImmediate) setImmediate(() => order.push(`setImmediate queued after the call: ${state()}`));
  };
  if (mode === 'disconnect() at the start') {
    // Only the tick: before the loop starts, the answer may be read before the first
    // setImmediate runs.
    act(false);
  } else {
    process.on('message', (m) => {
      if (m === 'go') act(true);
    });
    if (mode.endsWith('listening')) {
      http.createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1');
    }
  }
}
