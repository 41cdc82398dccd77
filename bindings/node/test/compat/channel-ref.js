'use strict';
// Scenario: process.channel in a worker. It is an EventEmitter with ref(), unref() and a numeric
// fd while the worker is connected, and null from the disconnect on. After unref() the channel
// no longer keeps the worker alive: a listening round-robin server still does (and closing it
// lets the worker exit by itself, code 0, exitedAfterDisconnect false); with nothing else the
// worker exits at once; ref() undoes unref().
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const EventEmitter = require('node:events');
const http = require('node:http');

if (cluster.isPrimary) {
  armTimeout(cluster, 20000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  // One worker per mode, one after the other (their lines do not interleave). The worker prints
  // its own lines before it exits; the primary prints its lines once the worker has both
  // disconnected and exited.
  const modes = ['unref with a listening server', 'unref alone', 'unref then ref'];
  (function next() {
    const mode = modes.shift();
    if (!mode) return;
    const lines = [];
    const w = cluster.fork({ SCENARIO_MODE: mode });
    w.on('message', (m) => {
      if (m.unrefd) {
        // The worker unref()ed its channel once listening. Its server still serves (the worker
        // is alive), then closes on request.
        lines.push(`worker says unref()ed while listening`);
        http.get({ host: '127.0.0.1', port: m.port, path: '/', agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (body += d));
          res.on('end', () => {
            lines.push(`a request after unref() got ${res.statusCode} ${body}`);
            w.send('close your server');
          });
        }).on('error', (e) => {
          lines.push(`a request after unref() failed: ${e.code}`);
          w.send('close your server');
        });
      } else if (m === 'ref()ed') {
        lines.push(`worker says ${JSON.stringify(m)}; disconnecting it`);
        w.disconnect();
      }
    });
    // 'disconnect' and 'exit' can come in either order: record them apart.
    let disconnect;
    let exit;
    const done = () => {
      if (!disconnect || !exit) return;
      for (const line of [...lines, disconnect, exit]) console.log(`${mode}: primary: ${line}`);
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
  const log = (s) => console.log(`${mode}: worker: ${s}`);
  const c = process.channel;
  log(`process.channel: ${typeof c}, EventEmitter ${c instanceof EventEmitter}, ` +
    `ref ${typeof c.ref}, unref ${typeof c.unref}, fd ${typeof c.fd}; process.connected ${process.connected}`);
  process.on('exit', (code) => {
    log(`exit ${code}: process.channel ${process.channel === c ? 'the same object' : process.channel}, ` +
      `process.connected ${process.connected}`);
  });
  if (mode === 'unref with a listening server') {
    const server = http.createServer((req, res) => res.end('served'));
    server.listen(0, '127.0.0.1', () => {
      process.channel.unref();
      process.send({ unrefd: true, port: server.address().port });
    });
    process.on('message', (m) => {
      if (m === 'close your server') server.close(() => log('server closed'));
    });
  } else if (mode === 'unref alone') {
    process.channel.unref();
  } else {
    process.channel.unref();
    process.channel.ref();
    process.send('ref()ed');
    cluster.worker.on('disconnect', () => {
      log(`'disconnect': process.channel ${process.channel}, process.connected ${process.connected}`);
      c.ref();
      c.unref();
      log('ref() and unref() on the old channel object do not throw');
    });
  }
}
