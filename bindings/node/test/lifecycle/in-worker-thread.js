'use strict';
// corral loaded in a worker_thread: a primary there forks a worker; the thread ends while
// native threads run; the process must exit by itself, promptly.
const { Worker, isMainThread, parentPort } = require('worker_threads');
const MODULE = process.env.CORRAL_MODULE;
if (isMainThread) {
  const w = new Worker(__filename, { env: process.env });
  w.on('message', (m) => console.log(m));
  w.on('exit', (code) => console.log(`thread exit ${code}`));
} else {
  const cluster = require(MODULE);
  parentPort.postMessage(`in thread: isPrimary=${cluster.isPrimary}`);
  cluster.setupPrimary({ exec: require('path').join(__dirname, 'idle-worker.js') });
  const worker = cluster.fork();
  worker.on('online', () => {
    parentPort.postMessage('worker online');
    // End the thread while the engine's threads and the worker run.
    process.exit(0);
  });
}
