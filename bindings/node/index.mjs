// ESM entry: `import cluster from 'corral'` or named imports, as with node:cluster.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const cluster = require('./index.js');

export default cluster;
// The names node:cluster exports (in a primary or a worker), but its EventEmitter fields and its
// worker's internal _getServer/_setupWorker. Values as at load, as node:cluster's are until
// module.syncBuiltinESMExports().
export const {
  isPrimary, isMaster, isWorker, SCHED_NONE, SCHED_RR, Worker, workers, worker, settings, schedulingPolicy,
} = cluster;
// corral's own (see index.d.ts).
export const { SCHED_KERNEL_RR } = cluster;
export const { SCHED_KERNEL_LEAST } = cluster;
export const fork = (...args) => cluster.fork(...args);
export const disconnect = (...args) => cluster.disconnect(...args);
export const setupPrimary = (...args) => cluster.setupPrimary(...args);
export const setupMaster = (...args) => cluster.setupMaster(...args);
