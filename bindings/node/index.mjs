// ESM entry: `import cluster from 'corral'` or named imports, as with node:cluster.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const cluster = require('./index.js');

export default cluster;
export const { isPrimary, isMaster, isWorker, SCHED_NONE, SCHED_RR, Worker, workers, worker } = cluster;
export const fork = (...args) => cluster.fork(...args);
export const disconnect = (...args) => cluster.disconnect(...args);
export const setupPrimary = (...args) => cluster.setupPrimary(...args);
export const setupMaster = (...args) => cluster.setupMaster(...args);
