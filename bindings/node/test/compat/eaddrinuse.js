'use strict';
// Scenario: a worker listens on a port the primary already holds with a plain net.Server. The
// worker's server gets an 'error' shaped like Node's system errors (code EADDRINUSE, errno,
// syscall 'bind', address, port), no 'listening' reaches the primary; with exclusive: true the
// worker binds itself and the syscall is 'listen'. A new server can then listen(0). (Retrying on
// the failed server object also works, but Node then sends the primary two 'listening' events:
// the failed attempt's listener is still armed. Not checked here.)
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const http = require('node:http');
const net = require('node:net');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  const busy = net.createServer();
  busy.listen(0, '127.0.0.1', () => {
    const busyPort = busy.address().port;
    const listeningPorts = [];
    const w = cluster.fork({ BUSY_PORT: String(busyPort) });
    w.on('listening', (address) => listeningPorts.push(address.port));
    w.on('message', (msg) => {
      for (const line of msg.lines) console.log(line);
      w.disconnect();
      busy.close();
    });
    w.on('exit', (code, signal) => {
      console.log(`worker exit code=${code} signal=${signal}`);
      console.log(`'listening' events in the primary: ${listeningPorts.length}, ` +
        `on the busy port: ${listeningPorts.filter((p) => p === busyPort).length}`);
    });
  });
} else {
  const busyPort = Number(process.env.BUSY_PORT);
  const lines = [];
  const describe = (label, err) => {
    lines.push(`${label}: ${err.name} code=${err.code} errno=${err.errno} syscall=${err.syscall} ` +
      `address=${err.address} port=${err.port === busyPort ? 'BUSY_PORT' : err.port}`);
    lines.push(`  message: ${err.message.replace(String(busyPort), 'BUSY_PORT')}`);
    lines.push(`  own keys: ${Object.keys(err).join(',')}; instanceof Error ${err instanceof Error}`);
  };

  const server = http.createServer((req, res) => res.end('ok'));
  server.once('error', (err) => {
    describe('shared listen on the busy port', err);
    lines.push(`  server.listening=${server.listening} worker state=${cluster.worker.state}`);
    const exclusive = net.createServer();
    exclusive.once('error', (err2) => {
      describe('exclusive listen on the busy port', err2);
      const fresh = http.createServer((req, res) => res.end('ok'));
      fresh.listen(0, '127.0.0.1', () => {
        lines.push(`new server listen(0): listening=${fresh.listening} port differs ${fresh.address().port !== busyPort}`);
        process.send({ lines });
      });
    });
    exclusive.listen({ port: busyPort, host: '127.0.0.1', exclusive: true });
  });
  server.listen(busyPort, '127.0.0.1');
}
