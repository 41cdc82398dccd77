// Compile-only: `require('corral')` used the way a node:cluster tutorial uses node:cluster. Nothing
// here runs; `tsc -p .` (see tsconfig.json) must accept it under --strict. Every
// `@ts-expect-error` line must fail to compile, or tsc reports it as unused.
import cluster = require('corral');
import clusterDefault from 'corral';
import { Worker } from 'corral';
import type { Address, Cluster, ClusterSettings } from 'corral';
import * as http from 'node:http';
import * as net from 'node:net';
import { availableParallelism } from 'node:os';
import nodeCluster from 'node:cluster';

// exact<T>()(value) compiles only when value's type is exactly T (not any, not a subtype).
type Equal<X, Y> = (<T>() => T extends X ? 1 : 2) extends (<T>() => T extends Y ? 1 : 2) ? true : false;
function exact<T>() {
    return <U>(_value: U, ..._mismatch: Equal<T, U> extends true ? [] : [never]): void => {};
}

if (cluster.isPrimary) {
    console.log(`Primary ${process.pid} is running`);
    cluster.setupPrimary({ exec: __filename, args: ['--use', 'http'], silent: false, serialization: 'advanced' });
    const settings: ClusterSettings = cluster.settings;
    console.log(settings.exec, settings.execArgv, cluster.schedulingPolicy === cluster.SCHED_RR, cluster.SCHED_NONE);

    for (let i = 0; i < availableParallelism(); i++) {
        const w = cluster.fork({ WORKER_INDEX: String(i) });
        exact<Worker>()(w);
        w.on('online', () => console.log(`worker ${w.id} online, pid ${w.process.pid}`));
        w.on('listening', (address) => exact<Address>()(address));
        w.on('message', (msg, handle) => { exact<any>()(msg); exact<net.Socket | net.Server>()(handle); });
        w.on('exit', (code, signal) => { exact<number>()(code); exact<string>()(signal); });
        w.once('disconnect', () => console.log('disconnected'));
        w.on('error', (err) => exact<Error>()(err));
        w.prependListener('exit', (code) => exact<number>()(code));
        w.prependOnceListener('listening', (address) => exact<Address>()(address));
        w.addListener('message', (msg) => exact<any>()(msg));
        const queued = w.send({ cmd: 'hello' }, (err) => exact<Error | null>()(err));
        exact<boolean>()(queued);
        console.log(w.isConnected(), w.isDead(), w.exitedAfterDisconnect);
    }

    cluster.on('fork', (worker) => exact<Worker>()(worker));
    cluster.on('online', (worker) => console.log(`online ${worker.id}`));
    cluster.on('listening', (worker, address) => {
        exact<Address>()(address);
        console.log(`worker ${worker.id} listening on ${address.address}:${address.port} (${address.addressType})`);
    });
    cluster.on('message', (worker, message, handle) => {
        exact<Worker>()(worker);
        exact<net.Socket | net.Server>()(handle);
        if (message.cmd === 'notifyRequest') worker.send({ cmd: 'ack' });
    });
    cluster.on('disconnect', (worker) => console.log(`disconnect ${worker.id}`));
    cluster.on('exit', (worker, code, signal) => {
        exact<number>()(code);
        exact<string>()(signal);
        console.log(`worker ${worker.process.pid} died (${signal || code})`);
        if (!worker.exitedAfterDisconnect) cluster.fork();
    });
    cluster.on('setup', (s) => exact<ClusterSettings>()(s));
    cluster.once('exit', (worker, code) => exact<number>()(code));
    cluster.prependListener('listening', (worker, address) => exact<Address>()(address));
    cluster.prependOnceListener('fork', (worker) => exact<Worker>()(worker));
    cluster.addListener('setup', (s) => exact<ClusterSettings>()(s));
    exact<boolean>()(cluster.emit('setup', {}));

    for (const worker of Object.values(cluster.workers ?? {})) {
        worker?.send('big announcement to all workers');
    }
    const first = cluster.workers?.[1];
    if (first) {
        first.disconnect().kill('SIGTERM');
        first.destroy();
        const socket = new net.Socket();
        first.send({ cmd: 'handle' }, socket, { keepOpen: true }, () => {});
        first.send({ cmd: 'handle' }, socket);
        console.log(first instanceof Worker, first instanceof cluster.Worker);
    }
    process.on('SIGTERM', () => cluster.disconnect(() => console.log('all gone')));
    cluster.setupMaster();
    const c: Cluster = clusterDefault;
    console.log(cluster.isMaster, c.isWorker);
} else {
    const me = cluster.worker!;
    http.createServer((req, res) => {
        res.writeHead(200);
        res.end(`hello from worker ${me.id}\n`);
        me.send({ cmd: 'notifyRequest' });
    }).listen(8000, () => {
        // corral extra: optional, so code written for corral keeps its shape under node:cluster.
        me.ready?.();
        cluster.worker?.ready?.();
    });
    process.on('message', (msg: unknown) => console.log(msg));
    me.on('disconnect', () => process.exit(0));
}

// The shapes match node:cluster's own typings: each side is assignable to the other (corral's
// Worker only adds the optional `ready`; the module object adds `default`).
const asNode: typeof nodeCluster = cluster;
const asCorral: Cluster = nodeCluster;
const nodeWorker: import('node:cluster').Worker = cluster.fork();
const corralWorker: Worker = nodeCluster.fork();
const nodeSettings: import('node:cluster').ClusterSettings = {} as ClusterSettings;
const corralSettings: ClusterSettings = {} as import('node:cluster').ClusterSettings;
const nodeAddress: import('node:cluster').Address = {} as Address;
const corralAddress: Address = {} as import('node:cluster').Address;
// `Worker` is a class on the module object, as it is on node:cluster's.
const sameClass: typeof import('node:cluster').Worker = cluster.Worker;
void [asNode, asCorral, nodeWorker, corralWorker, nodeSettings, corralSettings, nodeAddress, corralAddress, sameClass];

// Not `any`: wrong uses are rejected.
// @ts-expect-error fork() returns a Worker, not a number
const notANumber: number = cluster.fork();
// @ts-expect-error no such setting
cluster.setupPrimary({ execPath: 'node' });
// @ts-expect-error isPrimary is read-only
cluster.isPrimary = false;
// @ts-expect-error workers is undefined in a worker
cluster.workers[1];
// @ts-expect-error worker is undefined in the primary
cluster.worker.id;
// @ts-expect-error nothing beyond node:cluster but ready()
cluster.worker?.metrics();
// @ts-expect-error an exit code is a number
cluster.on('exit', (worker, code) => exact<string>()(code));
void notANumber;

// corral extra: the supervisor.
if (cluster.isPrimary) {
    const sup = cluster.supervise({
        workers: 'auto',
        restart: { initialDelay: 100, maxDelay: 30000, factor: 2, jitter: 0.2, resetAfter: 30000, crashLoop: { exits: 5, window: 60000 }, noRestartExitCodes: [78] },
        shutdown: { signals: ['SIGTERM', 'SIGINT'], timeout: 30000 },
        reload: { signals: ['SIGHUP'], readyTimeout: 10000, probation: 1000, batch: 1 },
        heartbeat: { interval: 1000, timeout: 5000 },
        recycle: { maxRss: 512 * 2 ** 20, maxConnections: 0, jitter: 0.1 },
        metrics: { port: 9464, host: '127.0.0.1' },
    });
    sup.on('restart', (e) => console.log(e.slot, e.cause.type, e.delay));
    sup.on('crashloop', (e) => console.log(e.exits.map((x) => x.code)));
    void sup.reload().then((r) => console.log(r.ok, r.replaced));
    const m = sup.metrics();
    console.log(m.workers[0]?.rss);
    // @ts-expect-error workers must be a number or 'auto'
    cluster.supervise({ workers: 'many' });
}
