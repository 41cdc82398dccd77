'use strict';
// What every compat scenario (compat/*.js) starts and ends with, written once.

// Node 20's `node --test <dir>` also runs every .js under a test/ directory: a scenario run that
// way only reports itself as skipped (it is run by ../compat.test.js). True when it was.
//   if (require('../compat-support/scenario').skippedUnderNodeTest(__filename)) return;
function skippedUnderNodeTest(filename) {
  if (!process.env.NODE_TEST_CONTEXT) return false;
  require('node:test').test(filename, { skip: 'compat scenario, run by compat.test.js' });
  return true;
}

// The scenario's own deadline: prints TIMEOUT, SIGKILLs every worker it forked and exits 99, so
// a hang is reported as such and leaves no process behind. unref(): it never keeps the primary
// alive by itself.
function armTimeout(cluster, ms) {
  const seen = new Set();
  forked.set(cluster, seen);
  cluster.on('fork', (w) => seen.add(w));
  setTimeout(() => {
    console.log('TIMEOUT');
    for (const w of new Set([...seen, ...Object.values(cluster.workers)])) {
      try { process.kill(w.process.pid, 'SIGKILL'); } catch {}
    }
    process.exit(99);
  }, ms).unref();
}

// Every worker forked since armTimeout(), as seen by its 'fork' event.
const forked = new WeakMap();

// Resolves once every worker forked since armTimeout() has emitted 'exit'. The
// cluster.disconnect(cb) callback runs when the *first* worker is gone (node:cluster's
// removeWorker: see disconnect-cb.js), while the others may still hold the sockets they were
// given: a scenario that checks a port is free after the cluster left waits for this first,
// or it races the other workers' exits (under load, in node:cluster as in corral).
function allExited(cluster) {
  const seen = forked.get(cluster);
  if (!seen) throw new Error('allExited() needs armTimeout() first');
  return Promise.all([...seen].map((w) => (w.isDead()
    ? undefined
    : new Promise((resolve) => w.once('exit', resolve)))));
}

module.exports = { skippedUnderNodeTest, armTimeout, allExited };
