'use strict';
// Scenario: worker.process.disconnect() in the primary is child_process's disconnect, not the
// graceful cluster one. The channel is cut at once (connected false right after the call, a
// second call emits ERR_IPC_DISCONNECTED, sends fail with ERR_IPC_CHANNEL_CLOSED, 'disconnect'
// on the next tick with exitedAfterDisconnect false, the worker stays in cluster.workers until
// its exit). The worker, still listening, sees its channel end without having asked for it and
// exits at once with code 0, whatever its 'disconnect' handlers would do next.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  // The worker prints its own lines before it exits; the primary prints its lines once the
  // worker has both disconnected and exited.
  const lines = [];
  const log = (s) => lines.push(`primary: ${s}`);
  const w = cluster.fork();
  const state = () => `connected ${w.process.connected}, isConnected() ${w.isConnected()}, ` +
    `exitedAfterDisconnect ${w.exitedAfterDisconnect}, state ${w.state}, in workers ${w.id in cluster.workers}`;
  w.on('error', (e) => log(`worker 'error' ${e.code}`));
  w.on('message', (m) => log(`message ${JSON.stringify(m)}`));
  w.on('listening', () => {
    log(`at 'listening': ${state()}`);
    log(`worker.process.disconnect() returned ${w.process.disconnect()}`);
    log(`right after: ${state()}`);
    process.nextTick(() => log(`a tick later: ${state()}`));
    log('calling it again');
    w.process.disconnect();
    log(`worker.send() returned ${w.send('after the disconnect', (err) => log(`send callback ${err && err.code}`))}`);
  });
  let disconnect;
  let exit;
  const done = () => {
    if (!disconnect || !exit) return;
    for (const line of [...lines, disconnect, exit]) console.log(line);
  };
  w.on('disconnect', () => {
    disconnect = `primary: 'disconnect': ${state()}`;
    done();
  });
  w.on('exit', (code, signal) => {
    exit = `primary: 'exit' ${code} ${signal}: ${state()}`;
    done();
  });
} else {
  const log = (s) => console.log(`worker: ${s}`);
  http.createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1');
  // Handlers that would keep the worker going after the disconnect: none of them gets the
  // chance (the first exits before process's own 'disconnect' listeners run, and the timer
  // never fires).
  cluster.worker.on('disconnect', () => {
    log(`cluster.worker 'disconnect': exitedAfterDisconnect ${cluster.worker.exitedAfterDisconnect}, ` +
      `process.connected ${process.connected}, process.channel ${process.channel}`);
    setTimeout(() => log('still running 1 s after the disconnect'), 1000);
  });
  process.on('disconnect', () => log("process 'disconnect' listener ran"));
  process.on('exit', (code) => log(`exit ${code}`));
}
