'use strict';
// A worker out of file descriptors cannot take a connection from the primary (the kernel drops
// the fd). It must say so with an EMFILE error (thrown when nobody listens, so it exits 1 and
// prints it), not go away with code 0 as if the primary had left. MODE=handled: with an
// 'error' listener on cluster.worker the worker carries on and serves once it has fds again.
const cluster = require(process.env.CORRAL_MODULE);
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');

if (cluster.isPrimary) {
  const w = cluster.fork();
  let port;
  w.on('listening', (a) => {
    port = a.port;
    // Room for what Node has open and little else.
    const open = fs.readdirSync(`/proc/${w.process.pid}/fd`).length;
    execFileSync('prlimit', [`--pid=${w.process.pid}`, `--nofile=${open + 40}:${open + 40}`]);
    w.send('fill');
  });
  const get = (label, then) => {
    http.get({ host: '127.0.0.1', port, agent: false }, (res) => {
      res.resume();
      res.on('end', () => { console.log(`${label} ${res.statusCode}`); then(); });
    }).on('error', (e) => { console.log(`${label} failed`); then(); });
  };
  w.on('message', (m) => {
    // Unhandled mode: the worker may already be gone (exit 1) when the request fails; the
    // callback takes the send's ERR_IPC_CHANNEL_CLOSED instead of an 'error' event.
    if (m === 'full') get('request while full', () => w.send('free', () => {}));
    if (m === 'freed') get('request after', () => w.disconnect());
    if (m.startsWith && m.startsWith('error')) console.log(`worker ${m}`);
  });
  w.on('exit', (code) => console.log(`exit ${code}`));
} else {
  const held = [];
  if (process.env.MODE === 'handled') {
    cluster.worker.on('error', (e) => process.send(`error ${e.code} errno ${e.errno} ${e.syscall}`));
  }
  http.createServer((req, res) => res.end('ok')).listen(0, '127.0.0.1');
  process.on('message', (m) => {
    if (m === 'fill') {
      for (let i = 0; i < 1000; i++) {
        try {
          held.push(fs.openSync('/dev/null', 'r'));
        } catch (e) {
          if (e.code !== 'EMFILE') throw e;
          break;
        }
      }
      // One fd back for the send's own use? Not needed: sends carry no fds.
      process.send('full');
    }
    if (m === 'free') {
      for (const fd of held.splice(0)) fs.closeSync(fd);
      process.send('freed');
    }
  });
}
