// Type definitions for `require('corral')`.
//
// corral is a drop-in for `node:cluster`, so these typings mirror the ones users already have for
// it (@types/node v20, `cluster.d.ts`): the same names, overloads and event signatures, so that
// code written against `node:cluster` type-checks unchanged against corral and back. They are
// written by hand and differ from @types/node in two ways only:
//   - the module shape: CommonJS `export = cluster` (with a `default` for ESM imports), since
//     corral is a CommonJS package and not a built-in module;
//   - one corral extra, marked "corral extra" below: `Worker.ready()`.
// Keep it that way: a node:cluster API that is missing or typed differently here is a bug; a new
// corral extra needs its own "corral extra" comment.

/// <reference types="node" />

import * as child from 'node:child_process';
import EventEmitter = require('node:events');
import * as net from 'node:net';

// `Worker` is both a type and a value (`import { Worker } from 'node:cluster'`, `instanceof`), so it
// lives outside the namespace below: a namespace that declares a value could not merge with the
// `cluster` constant that `export =` needs.
/**
 * One worker. In the primary: the values of `cluster.workers` and what `fork()` returns. In a
 * worker: `cluster.worker`.
 */
declare class Worker extends EventEmitter {
    /** The worker's id, counting from 1 and never reused; its key in `cluster.workers`. */
    id: number;
    /** In the primary, the worker's `ChildProcess`; in a worker, the global `process`. */
    process: child.ChildProcess;
    /**
     * In the primary, sends a message to this worker; in a worker, sends it to the primary
     * (as `process.send()`). Returns `false` when the message was queued behind others.
     */
    send(message: child.Serializable, callback?: (error: Error | null) => void): boolean;
    send(
        message: child.Serializable,
        sendHandle: child.SendHandle,
        callback?: (error: Error | null) => void,
    ): boolean;
    send(
        message: child.Serializable,
        sendHandle: child.SendHandle,
        options?: child.MessageOptions,
        callback?: (error: Error | null) => void,
    ): boolean;
    /** Kills the worker with `signal` (default `'SIGTERM'`) without a graceful disconnect. */
    kill(signal?: string): void;
    /** Alias of `kill()`. */
    destroy(signal?: string): void;
    /**
     * Graceful stop: the worker closes its servers, waits for their connections to end, then
     * disconnects its IPC channel and exits. Sets `exitedAfterDisconnect`.
     */
    disconnect(): this;
    /** Whether the worker's IPC channel to the primary is still open. */
    isConnected(): boolean;
    /** Whether the worker's process has terminated (exited or killed by a signal). */
    isDead(): boolean;
    /**
     * `true` if the worker exited because of `disconnect()`, `false` if it exited any other
     * way, `undefined` while it runs. A primary respawns only when this is not `true`.
     */
    exitedAfterDisconnect: boolean;

    /**
     * corral extra (not in node:cluster): in a worker, tells the primary that the application
     * is ready, after its warm-up (`cluster.worker.ready()`). Meaningful in a worker only, and
     * optional so that code typed for corral keeps its shape when it runs under node:cluster.
     * Throws an error with code `ERR_IPC_CHANNEL_CLOSED` once the worker has disconnected.
     */
    ready?(): void;

    /**
     * Events:
     *   1. disconnect
     *   2. error
     *   3. exit
     *   4. listening
     *   5. message
     *   6. online
     */
    addListener(event: string, listener: (...args: any[]) => void): this;
    addListener(event: 'disconnect', listener: () => void): this;
    addListener(event: 'error', listener: (error: Error) => void): this;
    addListener(event: 'exit', listener: (code: number, signal: string) => void): this;
    addListener(event: 'listening', listener: (address: cluster.Address) => void): this;
    // The handle is a net.Socket, a net.Server, or undefined.
    addListener(event: 'message', listener: (message: any, handle: net.Socket | net.Server) => void): this;
    addListener(event: 'online', listener: () => void): this;
    emit(event: string | symbol, ...args: any[]): boolean;
    emit(event: 'disconnect'): boolean;
    emit(event: 'error', error: Error): boolean;
    emit(event: 'exit', code: number, signal: string): boolean;
    emit(event: 'listening', address: cluster.Address): boolean;
    emit(event: 'message', message: any, handle: net.Socket | net.Server): boolean;
    emit(event: 'online'): boolean;
    on(event: string, listener: (...args: any[]) => void): this;
    on(event: 'disconnect', listener: () => void): this;
    on(event: 'error', listener: (error: Error) => void): this;
    on(event: 'exit', listener: (code: number, signal: string) => void): this;
    on(event: 'listening', listener: (address: cluster.Address) => void): this;
    on(event: 'message', listener: (message: any, handle: net.Socket | net.Server) => void): this;
    on(event: 'online', listener: () => void): this;
    once(event: string, listener: (...args: any[]) => void): this;
    once(event: 'disconnect', listener: () => void): this;
    once(event: 'error', listener: (error: Error) => void): this;
    once(event: 'exit', listener: (code: number, signal: string) => void): this;
    once(event: 'listening', listener: (address: cluster.Address) => void): this;
    once(event: 'message', listener: (message: any, handle: net.Socket | net.Server) => void): this;
    once(event: 'online', listener: () => void): this;
    prependListener(event: string, listener: (...args: any[]) => void): this;
    prependListener(event: 'disconnect', listener: () => void): this;
    prependListener(event: 'error', listener: (error: Error) => void): this;
    prependListener(event: 'exit', listener: (code: number, signal: string) => void): this;
    prependListener(event: 'listening', listener: (address: cluster.Address) => void): this;
    prependListener(event: 'message', listener: (message: any, handle: net.Socket | net.Server) => void): this;
    prependListener(event: 'online', listener: () => void): this;
    prependOnceListener(event: string, listener: (...args: any[]) => void): this;
    prependOnceListener(event: 'disconnect', listener: () => void): this;
    prependOnceListener(event: 'error', listener: (error: Error) => void): this;
    prependOnceListener(event: 'exit', listener: (code: number, signal: string) => void): this;
    prependOnceListener(event: 'listening', listener: (address: cluster.Address) => void): this;
    prependOnceListener(event: 'message', listener: (message: any, handle: net.Socket | net.Server) => void): this;
    prependOnceListener(event: 'online', listener: () => void): this;
}
type WorkerClass = Worker;

declare namespace cluster {
    type SerializationType = 'json' | 'advanced';

    /** What `setupPrimary()` takes and what `cluster.settings` holds after it (or `fork()`). */
    interface ClusterSettings {
        /**
         * corral, `schedulingPolicy` sticky: route by this cookie, query parameter or header of
         * each connection's first request (peeked at, not consumed; absent: by address), and
         * the address prefixes that make one client (default: the whole address). Read when the
         * first worker is forked. With a key (or `proxyProtocol`), on Linux the primary's TCP
         * listeners hand it a connection only once its first bytes came (`TCP_DEFER_ACCEPT`): a
         * client that connects and sends nothing is accepted about a second later.
         */
        sticky?: {
            cookie?: string;
            query?: string;
            header?: string;
            prefix?: { v4?: number; v6?: number };
        } | undefined;
        /**
         * corral: every connection starts with a PROXY protocol v1/v2 header (HAProxy
         * `send-proxy`, nginx `proxy_protocol on`): the primary consumes it, routes on the
         * client it names, and the worker's socket reports that client as `remoteAddress`,
         * `remotePort`, `remoteFamily`. A bad or missing header closes the connection. Read when
         * the first worker is forked. Default: false.
         */
        proxyProtocol?: boolean | undefined;
        /** Arguments for the Node.js executable. Default: `process.execArgv`. */
        execArgv?: string[] | undefined;
        /** The worker's script. Default: `process.argv[1]`. */
        exec?: string | undefined;
        /** Arguments for the worker's script. Default: `process.argv.slice(2)`. */
        args?: readonly string[] | undefined;
        /** Pipe the worker's output to the primary instead of inheriting stdio. Default: `false`. */
        silent?: boolean | undefined;
        /**
         * The worker's stdio, as for `child_process.fork()`: a string (`'pipe'`, `'ignore'`,
         * `'inherit'`) for stdin, stdout and stderr, or an array with exactly one `'ipc'` entry,
         * entry `i` being the worker's fd `i` (extra `'pipe'` entries appear as
         * `worker.process.stdio[i]`). Overrides `silent`.
         */
        stdio?: any[] | 'pipe' | 'ignore' | 'inherit' | 'overlapped' | undefined;
        /** The worker's user id (setuid(2)). */
        uid?: number | undefined;
        /** The worker's group id (setgid(2)). */
        gid?: number | undefined;
        /** The worker's inspector port, or a function that returns it. */
        inspectPort?: number | (() => number) | undefined;
        /** How messages are serialized: `'json'` (default) or `'advanced'` (V8 serializer). */
        serialization?: SerializationType | undefined;
        /** The worker's working directory. Default: the primary's. */
        cwd?: string | undefined;
        /** Hide the worker's console window (Windows). Default: `false`. */
        windowsHide?: boolean | undefined;
    }

    /** The address a worker listens on, as given to the `'listening'` events. */
    interface Address {
        address: string;
        port: number;
        /** `4` (TCPv4), `6` (TCPv6), `-1` (Unix domain socket), or `'udp4'`/`'udp6'`. */
        addressType: 4 | 6 | -1 | 'udp4' | 'udp6';
    }

    /** See the `Worker` class above. */
    type Worker = WorkerClass;

    /** The module itself: `const cluster = require('corral')`. */
    interface Cluster extends EventEmitter {
        /**
         * Primary only: calls `disconnect()` on every worker; `callback` runs once
         * `cluster.workers` is empty.
         */
        disconnect(callback?: () => void): void;
        /** Primary only: starts a worker; `env` is added to its environment. Returns at once. */
        fork(env?: any): Worker;
        /** @deprecated since Node.js v16.0.0: use `isPrimary`. */
        readonly isMaster: boolean;
        /** `true` in the primary, decided when the module loads. */
        readonly isPrimary: boolean;
        /** `true` in a worker: `!isPrimary`. */
        readonly isWorker: boolean;
        /**
         * `cluster.SCHED_RR` (round-robin, the default) or `cluster.SCHED_NONE` (left to the OS),
         * or corral's `cluster.SCHED_KERNEL_RR` (also written `'kernel-rr'`): each worker accepts
         * on its own socket of a SO_REUSEPORT group and an eBPF program deals connections in
         * turn. It needs CAP_BPF (or root); without it an address runs round-robin and a
         * `process.emitWarning()` with code `'CORRAL_KERNEL_RR_FALLBACK'` says why.
         * Also corral's `cluster.SCHED_STICKY` (`'sticky'`: every connection of a client to the
         * same worker, by address or by `setupPrimary({ sticky })`'s key) and
         * `cluster.SCHED_LEAST` (`'least'`, `'least-p2c'`: the worker with the fewest open
         * connections), and `cluster.SCHED_KERNEL_LEAST` (`'kernel-least'`: as kernel-rr, the
         * eBPF program picking the worker with the fewest open connections; `'least'` where it
         * cannot be loaded). Under kernel-rr a worker with 32 connections handed to it and not
         * yet taken (queued at it, not open: held keep-alive connections do not count) is
         * skipped.
         * Frozen once the first worker is forked or `setupPrimary()` is called. Also set by the
         * `NODE_CLUSTER_SCHED_POLICY` environment variable (`'rr'` or `'none'`) and by
         * `CORRAL_SCHED_POLICY` (`'rr'`, `'shared'`, `'kernel-rr'`, `'kernel-least'`,
         * `'sticky'`, `'least'`, `'least-p2c'`).
         */
        schedulingPolicy:
            | number
            | 'rr'
            | 'none'
            | 'shared'
            | 'kernel-rr'
            | 'kernel-least'
            | 'sticky'
            | 'least'
            | 'least-p2c';
        /** The settings in force, defaults included, after `setupPrimary()` or `fork()`. Read only. */
        readonly settings: ClusterSettings;
        /** @deprecated since Node.js v16.0.0: use `setupPrimary()`. */
        setupMaster(settings?: ClusterSettings): void;
        /**
         * Primary only: changes the settings for later `fork()` calls (running workers keep
         * theirs). Settings add up across calls. Emits `'setup'`.
         */
        setupPrimary(settings?: ClusterSettings): void;
        /** In a worker, the current worker; `undefined` in the primary. */
        readonly worker?: Worker;
        /**
         * Primary only: the live workers by id. A worker leaves it once it has both disconnected
         * and exited, before the last of those two events is emitted.
         */
        readonly workers?: NodeJS.Dict<Worker>;
        readonly SCHED_NONE: number;
        readonly SCHED_RR: number;
        /** corral's kernel round-robin (see `schedulingPolicy`). */
        readonly SCHED_KERNEL_RR: number;
        /** corral: a client's connections reach one worker (`schedulingPolicy`). */
        readonly SCHED_STICKY: number;
        /** corral: each connection goes to the least loaded worker (`schedulingPolicy`). */
        readonly SCHED_LEAST: number;
        /** corral's kernel least-loaded (see `schedulingPolicy`). */
        readonly SCHED_KERNEL_LEAST: number;

        /**
         * Events:
         *   1. disconnect
         *   2. exit
         *   3. fork
         *   4. listening
         *   5. message
         *   6. online
         *   7. setup
         */
        addListener(event: string, listener: (...args: any[]) => void): this;
        addListener(event: 'disconnect', listener: (worker: Worker) => void): this;
        addListener(event: 'exit', listener: (worker: Worker, code: number, signal: string) => void): this;
        addListener(event: 'fork', listener: (worker: Worker) => void): this;
        addListener(event: 'listening', listener: (worker: Worker, address: Address) => void): this;
        // The handle is a net.Socket, a net.Server, or undefined.
        addListener(
            event: 'message',
            listener: (worker: Worker, message: any, handle: net.Socket | net.Server) => void,
        ): this;
        addListener(event: 'online', listener: (worker: Worker) => void): this;
        addListener(event: 'setup', listener: (settings: ClusterSettings) => void): this;
        emit(event: string | symbol, ...args: any[]): boolean;
        emit(event: 'disconnect', worker: Worker): boolean;
        emit(event: 'exit', worker: Worker, code: number, signal: string): boolean;
        emit(event: 'fork', worker: Worker): boolean;
        emit(event: 'listening', worker: Worker, address: Address): boolean;
        emit(event: 'message', worker: Worker, message: any, handle: net.Socket | net.Server): boolean;
        emit(event: 'online', worker: Worker): boolean;
        emit(event: 'setup', settings: ClusterSettings): boolean;
        on(event: string, listener: (...args: any[]) => void): this;
        on(event: 'disconnect', listener: (worker: Worker) => void): this;
        on(event: 'exit', listener: (worker: Worker, code: number, signal: string) => void): this;
        on(event: 'fork', listener: (worker: Worker) => void): this;
        on(event: 'listening', listener: (worker: Worker, address: Address) => void): this;
        on(event: 'message', listener: (worker: Worker, message: any, handle: net.Socket | net.Server) => void): this;
        on(event: 'online', listener: (worker: Worker) => void): this;
        on(event: 'setup', listener: (settings: ClusterSettings) => void): this;
        once(event: string, listener: (...args: any[]) => void): this;
        once(event: 'disconnect', listener: (worker: Worker) => void): this;
        once(event: 'exit', listener: (worker: Worker, code: number, signal: string) => void): this;
        once(event: 'fork', listener: (worker: Worker) => void): this;
        once(event: 'listening', listener: (worker: Worker, address: Address) => void): this;
        once(event: 'message', listener: (worker: Worker, message: any, handle: net.Socket | net.Server) => void): this;
        once(event: 'online', listener: (worker: Worker) => void): this;
        once(event: 'setup', listener: (settings: ClusterSettings) => void): this;
        prependListener(event: string, listener: (...args: any[]) => void): this;
        prependListener(event: 'disconnect', listener: (worker: Worker) => void): this;
        prependListener(event: 'exit', listener: (worker: Worker, code: number, signal: string) => void): this;
        prependListener(event: 'fork', listener: (worker: Worker) => void): this;
        prependListener(event: 'listening', listener: (worker: Worker, address: Address) => void): this;
        prependListener(
            event: 'message',
            listener: (worker: Worker, message: any, handle: net.Socket | net.Server) => void,
        ): this;
        prependListener(event: 'online', listener: (worker: Worker) => void): this;
        prependListener(event: 'setup', listener: (settings: ClusterSettings) => void): this;
        prependOnceListener(event: string, listener: (...args: any[]) => void): this;
        prependOnceListener(event: 'disconnect', listener: (worker: Worker) => void): this;
        prependOnceListener(event: 'exit', listener: (worker: Worker, code: number, signal: string) => void): this;
        prependOnceListener(event: 'fork', listener: (worker: Worker) => void): this;
        prependOnceListener(event: 'listening', listener: (worker: Worker, address: Address) => void): this;
        prependOnceListener(
            event: 'message',
            listener: (worker: Worker, message: any, handle: net.Socket | net.Server) => void,
        ): this;
        prependOnceListener(event: 'online', listener: (worker: Worker) => void): this;
        prependOnceListener(event: 'setup', listener: (settings: ClusterSettings) => void): this;
    }

    // ------------------------------------------------------------------ corral extras
    // Beyond node:cluster: the engine's supervisor (backoff with a crash-loop breaker,
    // health-gated rolling reload, hang watchdog, recycling, scaling, metrics).

    /** Options of `cluster.supervise()`. Times are in milliseconds. Unknown keys are rejected. */
    interface SuperviseOptions {
        /** Workers to keep alive: a number >= 1 or "auto" (cgroup-aware CPU count). Default "auto". */
        workers?: number | 'auto';
        restart?: {
            initialDelay?: number;
            maxDelay?: number;
            factor?: number;
            /** 0..1: +/- spread of each delay. */
            jitter?: number;
            /** A worker that ran this long was stable: the backoff starts over. */
            resetAfter?: number;
            /** `exits` unstable exits within `window` ms: retry at maxDelay only ('crashloop'). */
            crashLoop?: { exits?: number; window?: number };
            /** Exit codes that are not restarted ('norestart'). */
            noRestartExitCodes?: number[];
        };
        shutdown?: { signals?: NodeJS.Signals[]; timeout?: number };
        reload?: {
            signals?: NodeJS.Signals[];
            readyTimeout?: number;
            probation?: number;
            batch?: number;
            /** Wait for `cluster.worker.ready()` instead of the first 'listening'. */
            waitReady?: boolean;
        };
        heartbeat?: { interval?: number; timeout?: number };
        recycle?: { maxRss?: number; maxConnections?: number; jitter?: number };
        /** Prometheus text on http://host:port/ (host defaults to 127.0.0.1). */
        metrics?: { port?: number; host?: string };
    }

    interface ExitInfo {
        code: number | null;
        signal: number | null;
    }

    interface ReloadReport {
        ok: boolean;
        replaced: number;
        reason: string | null;
        duration: number;
    }

    interface WorkerMetrics {
        slot: number;
        id: number;
        pid: number;
        state: 'starting' | 'ready' | 'draining';
        handedOff: number;
        /** Connections it handed back at its server's maxConnections, dealt to other workers. */
        refused: number;
        /** Connections read back unread from its channel when its loop was blocked for the stall time (25 ms; sticky: 250 ms), dealt to other workers. */
        takenBack: number;
        inflight: number;
        active?: number;
        restarts: number;
        lastRestartCause?: string;
        uptime: number;
        rss: number;
        cpu: number;
    }

    interface MetricsSnapshot {
        workers: WorkerMetrics[];
        restarts: Record<string, number>;
        crashLoopingSlots: number[];
        reloads: number;
        endpoint?: string;
    }

    interface Supervisor extends EventEmitter {
        reload(): Promise<ReloadReport>;
        scale(workers: number): Promise<{ workers: number }>;
        shutdown(): Promise<{ clean: boolean }>;
        metrics(): MetricsSnapshot;
        prometheus(): string;
        on(event: 'restart', listener: (e: { slot: number; worker: number; previous: number | null; cause: { type: 'boot' | 'crash' | 'hang' | 'recycle' | 'reload'; exit?: ExitInfo; reason?: string }; delay: number }) => void): this;
        on(event: 'crashloop', listener: (e: { slot: number; exits: ExitInfo[] }) => void): this;
        on(event: 'norestart', listener: (e: { slot: number; worker: number; exit: ExitInfo }) => void): this;
        on(event: 'hang', listener: (e: { slot: number; worker: number; silentFor: number }) => void): this;
        on(event: 'recycle', listener: (e: { slot: number; worker: number; reason: string }) => void): this;
        on(event: 'reload', listener: (e: ReloadReport) => void): this;
        on(event: 'scale', listener: (e: { from: number; to: number }) => void): this;
        on(event: string | symbol, listener: (...args: any[]) => void): this;
    }

}

// `Worker` is on the module object, as on node:cluster's (and so `import { Worker } from 'corral'`
// works). `default` is the module itself: `import cluster from 'corral'` then means what
// `import cluster from 'node:cluster'` means under every compiler setting. ESM (index.mjs) and
// esModuleInterop need nothing more; TypeScript compiled to CommonJS without esModuleInterop
// reads `require('corral').default`, which index.js must then provide (non-enumerable, so that
// the module's keys stay node:cluster's).
declare const cluster: cluster.Cluster & {
    readonly Worker: typeof Worker;
    readonly default: cluster.Cluster;
    /** corral extra: start the supervisor in the primary (see SuperviseOptions). */
    supervise(options?: cluster.SuperviseOptions): cluster.Supervisor;
};
export = cluster;
