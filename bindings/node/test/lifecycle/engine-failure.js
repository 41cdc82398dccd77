'use strict';
// The engine thread fails (CORRAL_FAULT=engine-panic panics it when a worker listens): JS gets
// an 'error' with ERR_CORRAL_ENGINE, then every worker's exit, and the process ends by itself
// instead of listing live workers forever with no event. MODE=unhandled: without an 'error'
// listener the error is thrown, as any EventEmitter's, once the exits are handled.
const cluster = require(process.env.CORRAL_MODULE);
const http = require('node:http');

if (cluster.isPrimary) {
  const supervised = process.env.MODE === 'supervised';
  if (supervised) {
    const sup = cluster.supervise({ workers: 2, restart: { initialDelay: 10 } });
    sup.on('error', (e) => console.log(`supervisor error ${e.code} ${/panicked/.test(e.message)}`));
  } else {
    for (let i = 0; i < 2; i++) cluster.fork();
    if (process.env.MODE !== 'unhandled') {
      cluster.on('error', (e) => console.log(`cluster error ${e.code} ${/fault injected/.test(e.message)}`));
    }
  }
  cluster.on('exit', (w, code, signal) => {
    console.log(`exit ${signal} workers left ${Object.keys(cluster.workers).length}`);
    if (Object.keys(cluster.workers).length === 0) {
      try {
        cluster.fork();
      } catch (e) {
        console.log(`fork after failure ${e.code}`);
      }
    }
  });
  process.on('exit', (code) => console.log(`primary exits ${code}`));
} else {
  http.createServer((req, res) => res.end('hi')).listen(0, '127.0.0.1');
}
