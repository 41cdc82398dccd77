'use strict';
// require('corral'): node:cluster's API on corral's native engine.
//
// Laid out as Node's lib/cluster.js and lib/internal/cluster/: this file picks the side, as
// Node's picks on NODE_UNIQUE_ID, and the sides live in lib/:
//   lib/primary.js     the primary (fork, setupPrimary, disconnect, worker events)
//   lib/child.js       a worker (cluster.worker, process.send/channel, listen via the primary)
//   lib/worker.js      cluster.Worker
//   lib/messages.js    process.send's arguments, the wire envelope, handles as fds
//   lib/supervisor.js  cluster.supervise() (beyond node:cluster)
//   lib/native.js      the addon, the constants shared with it, event batches
//   lib/loader.js      which addon file for this platform, and from where
//   lib/errors.js      Node-shaped errors (code, errno, syscall)
//   lib/utils.js       what both sides share (keep-alive, signal names)

const { isMainThread } = require('worker_threads');
const { addon } = require('./lib/native');

// A worker is a process the engine started (its environment names the channel), on its main
// thread: a worker_thread of a worker is not a cluster worker, as with node:cluster.
const isWorker = isMainThread && addon.workerEnv() != null;
const cluster = require(isWorker ? './lib/child' : './lib/primary');

// For TypeScript compiled to CommonJS without esModuleInterop (`import cluster from`).
Object.defineProperty(cluster, 'default', { value: cluster, enumerable: false });

module.exports = cluster;
