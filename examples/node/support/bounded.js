'use strict';
// What the examples need for their bounded mode (the one the tests run: a fixed amount of work,
// then exit), kept apart so that each example shows only its cluster code.

const http = require('node:http');

function get(port, path) {
  return new Promise((resolve, reject) => {
    // agent: false: a new connection per request, so that each one can go to another worker.
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`status ${res.statusCode}`))));
      res.on('error', reject);
    }).on('error', reject);
  });
}

// `--name N` from the command line (workers get the same arguments), or null when absent.
function countOption(name) {
  const i = process.argv.indexOf(name);
  if (i === -1) return null;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`${name} takes a count, got ${process.argv[i + 1]}`);
    process.exit(2);
  }
  return n;
}

// A bounded run must end: if it hangs, say where, kill the workers and exit non-zero. unref():
// this timer alone never keeps the primary alive.
function hardTimeout(cluster, ms, stage) {
  const forked = new Set();
  cluster.on('fork', (worker) => forked.add(worker));
  setTimeout(() => {
    console.error(`timed out after ${ms} ms, ${stage()}`);
    for (const worker of forked) {
      try { process.kill(worker.process.pid, 'SIGKILL'); } catch {} // already gone
    }
    process.exit(1);
  }, ms).unref();
}

module.exports = { get, countOption, hardTimeout };
