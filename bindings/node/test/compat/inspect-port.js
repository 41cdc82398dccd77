'use strict';
// Scenario: inspector ports of workers. With an inspector flag in execArgv each worker gets
// --inspect-port: the primary's debugPort + 1, + 2, ... by default, settings.inspectPort when it
// is a number, its result when it is a function; inspectPort null makes fork() throw
// ERR_SOCKET_BAD_PORT. `--inspect-port` alone sets the port without opening an inspector, so
// nothing listens. Without an inspector flag workers get no --inspect-port.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  console.log(`primary: debugPort ${process.debugPort}`);
  let calls = 0;
  const steps = [
    ['no inspector flag', {}],
    ['--inspect-port, default', { execArgv: ['--inspect-port=40001'] }],
    ['--inspect-port, default again', {}],
    ['inspectPort 41234', { inspectPort: 41234 }],
    ['inspectPort function', { inspectPort: () => 42000 + ++calls }],
    ['inspectPort function again', {}],
    ['inspectPort null', { inspectPort: null }],
    ['after the throw', { inspectPort: 41235 }],
  ];
  const next = () => {
    const step = steps.shift();
    if (!step) return;
    const [label, settings] = step;
    cluster.setupPrimary(settings);
    let w;
    try {
      w = cluster.fork();
    } catch (e) {
      console.log(`primary: ${label}: fork() threw ${e.name} ${e.code}: ${e.message}`);
      next();
      return;
    }
    w.on('message', (m) => console.log(`primary: ${label}: worker ${w.id} debugPort ${m.debugPort} execArgv ${JSON.stringify(m.execArgv)}`));
    w.on('exit', () => next());
  };
  next();
} else {
  process.send({ debugPort: process.debugPort, execArgv: process.execArgv }, () => cluster.worker.disconnect());
}
