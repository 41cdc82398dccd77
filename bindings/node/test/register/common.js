'use strict';
// Shared by the programs in this directory. Each one is an ordinary node:cluster program that
// says require('cluster') (or imports node:cluster); test/register.test.js runs it plainly
// (node:cluster, the control) and through `--require`/`--import corral/register`, and checks
// that both print the same, but for the two lines that say which runtime ran it.
//
// Require this file first: it reads CORRAL_WORKER_ID, which corral's worker side consumes when
// the cluster module loads, to tell the primary which cluster engine started this worker.

const corralWorkerId = process.env.CORRAL_WORKER_ID;

// Node 20's `node --test <dir>` also runs every .js/.mjs under a test/ directory: a program here
// started that way only reports itself as skipped (true: it must not go on).
function runAsTestFile(file) {
  if (!process.env.NODE_TEST_CONTEXT) return false;
  require('node:test').test(file, { skip: 'corral/register program, run by register.test.js' });
  return true;
}

// Every wait in these programs is bounded: a stuck run says where it was and exits 99 (the
// test kills what is left of its process group).
let stage = 'starting';
function armTimeout(ms = 20_000) {
  setTimeout(() => {
    console.log(`TIMEOUT while ${stage} (active: ${process.getActiveResourcesInfo().join(', ')})`);
    process.exit(99);
  }, ms).unref();
}

function setStage(s) {
  stage = s;
}

// 'corral' when require('cluster') returned corral (it has supervise()), else 'node:cluster'.
function runtime(cluster) {
  return typeof cluster.supervise === 'function' ? 'corral' : 'node:cluster';
}

// In a worker: what it tells the primary about its engine.
function workerHello(cluster) {
  return { hello: true, id: cluster.worker.id, corralId: corralWorkerId };
}

// In the primary: the worker ids whose CORRAL_WORKER_ID matched, or 'none'.
function onCorral(hellos) {
  const ids = hellos.filter((h) => h.corralId === String(h.id)).map((h) => h.id).sort((a, b) => a - b);
  return ids.length ? ids.join(',') : 'none';
}

// Resolves once `n` workers sent their hello (the primary keeps every hello).
function collectHellos(cluster, n) {
  return new Promise((resolve) => {
    const hellos = [];
    const onMessage = (worker, message) => {
      if (!message || message.hello !== true) return;
      hellos.push(message);
      if (hellos.length === n) {
        cluster.off('message', onMessage);
        resolve(hellos);
      }
    };
    cluster.on('message', onMessage);
  });
}

// Ends the run: every worker disconnected and gone, then the primary exits 0.
function finish(cluster) {
  setStage('disconnecting the workers');
  cluster.disconnect(() => {
    console.log('disconnected');
    process.exitCode = 0;
  });
}

module.exports = { runAsTestFile, armTimeout, setStage, runtime, workerHello, onCorral, collectHellos, finish, corralWorkerId };
