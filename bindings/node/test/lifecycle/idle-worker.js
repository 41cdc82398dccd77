'use strict';
// A worker that just stays connected (like a cluster worker with no server).
const cluster = require(process.env.CORRAL_MODULE);
if (cluster.isPrimary) throw new Error('idle-worker.js is a worker script');
cluster.worker.on('disconnect', () => {});
