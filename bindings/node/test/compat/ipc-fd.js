'use strict';
// Scenario: the fd at the 'ipc' position of setupPrimary({ stdio }) is the worker's channel, as
// child_process.fork() puts its IPC channel there: process.channel.fd is that number and the fd
// is a socket, with the default stdio (fd 3), with 'pipe' entries, and with 'ipc' after an
// extra 'pipe' entry (fd 4; fd 3 is then that pipe).
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const fs = require('node:fs');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  const layouts = [
    ['default', undefined],
    ["'pipe'", 'pipe'],
    ['ipc at 4', [0, 1, 2, 'pipe', 'ipc']],
  ];
  (function next() {
    const layout = layouts.shift();
    if (!layout) return;
    const [name, stdio] = layout;
    cluster.setupPrimary({ stdio });
    const w = cluster.fork();
    w.on('message', (m) => console.log(`${name}: ${m}`));
    w.on('exit', (code) => {
      console.log(`${name}: worker exit ${code}`);
      next();
    });
  })();
} else {
  const fd = process.channel.fd;
  const kind = (n) => {
    try {
      const st = fs.fstatSync(n);
      return st.isSocket() ? 'socket' : st.isCharacterDevice() ? 'char device' : 'other';
    } catch (e) {
      return e.code;
    }
  };
  process.send(`process.channel.fd ${fd}, a ${kind(fd)}; fd 3: ${kind(3)}`, () => process.disconnect());
}
