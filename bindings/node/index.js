'use strict';
// require('corral'): node:cluster's API on corral's native engine.
//
// The primary runs the engine (listeners, connection handoff, exits) on a native thread; this
// file keeps node:cluster's objects, states and event order on top of it, following Node's own
// lib/internal/cluster/{primary,child,worker}.js. In a worker, net.Server's listen goes
// through the primary: round-robin connections arrive as fds on the channel, which the worker
// reads on its own event loop (bindings/node/src/uvpoll.rs), and enter net.Server through its own onconnection path (so getConnections, maxConnections, timeouts
// and keep-alive behave), shared mode hands the worker the listening socket itself.

const EventEmitter = require('events');
const net = require('net');
const os = require('os');
const path = require('path');
const util = require('util');
const v8 = require('v8');
const fs = require('fs');
const { isMainThread } = require('worker_threads');

const native = loadNative();

const SCHED_NONE = 1;
const SCHED_RR = 2;
// Bits of the engine's listen options (corral_core::listener::BindOptions).
const LISTEN_IPV6_ONLY = 1;
const LISTEN_READABLE_ALL = 2;
const LISTEN_WRITABLE_ALL = 4;
const INTERNAL_PREFIX = 'NODE_';
const ENV_SERIALIZATION = 'CORRAL_NODE_SERIALIZATION';

// Message envelope: [kind, handle type] + payload.
const MSG_JSON = 1;
const MSG_ADVANCED = 2;
const MSG_INTERNAL = 3;
const HANDLE_NONE = 0;
const HANDLE_SOCKET = 1;
const HANDLE_SERVER = 2;

// Native event kinds (bindings/node/src/events.rs).
const EV = {
  FORK: 1,
  ONLINE: 2, LISTENING: 3, MESSAGE: 4, READY: 5, DISCONNECT: 6, EXIT: 7, ERROR: 8,
  SHUTDOWN_COMPLETE: 10, CONNECTION: 20, LISTEN_OK: 21, LISTEN_ERR: 22,
  DISCONNECT_REQUEST: 23, PRIMARY_GONE: 24, FLUSHED: 25, SUPERVISOR: 30,
};
// The same variable as the C front's (crates/corral-core/src/environ.rs).
const ENV_HEARTBEAT = 'CORRAL_HEARTBEAT_MS';

// A batch from the native side (bindings/node/src/events.rs, to_js): one ArrayBuffer with
// [event count, fd count, flags, META ints per event, fds] then the payload bytes; or an array
// [that buffer, (the payload bytes as their own buffer when flags & 1,) ...strings], string
// indexes being positions in it.
const META = 17;
const HEAD = 3;
function decodeBatch(b) {
  const arr = Array.isArray(b) ? b : null;
  const ab = arr ? b[0] : b;
  const head = new Int32Array(ab, 0, HEAD);
  const n = head[0];
  const ints = new Int32Array(ab, 0, HEAD + n * META + head[1]);
  const fdBase = HEAD + n * META;
  const blob = head[2] & 1 ? Buffer.from(arr[1]) : Buffer.from(ab, ints.byteLength);
  const strings = arr;
  const out = new Array(n);
  for (let e = 0; e < n; e++) {
    const i = HEAD + e * META;
    const len = ints[i + 12];
    const first = ints[i + 13];
    const nfds = ints[i + 14];
    const msg = ints[i + 15];
    const extra = ints[i + 16];
    out[e] = {
      kind: ints[i],
      worker: ints[i + 1],
      pid: ints[i + 2],
      code: ints[i + 3] === -2147483648 ? null : ints[i + 3],
      signal: ints[i + 4] || null,
      errno: ints[i + 5],
      id: ints[i + 6],
      port: ints[i + 7],
      family: ints[i + 8],
      listener: ints[i + 9],
      flag: ints[i + 10] !== 0,
      data: len >= 0 ? blob.subarray(ints[i + 11], ints[i + 11] + len) : undefined,
      fds: nfds ? Array.from(ints.subarray(fdBase + first, fdBase + first + nfds)) : [],
      message: msg >= 0 ? strings[msg] : undefined,
      syscall: extra >= 0 ? strings[extra] : undefined,
      address: extra >= 0 ? strings[extra] : undefined,
    };
  }
  return out;
}

function loadNative() {
  const tried = [];
  const candidates = [];
  if (process.env.CORRAL_NATIVE_PATH) candidates.push(process.env.CORRAL_NATIVE_PATH);
  candidates.push(path.join(__dirname, 'corral.node'));
  for (const file of candidates) {
    if (!fs.existsSync(file)) {
      tried.push(`${file} (not found)`);
      continue;
    }
    const mod = { exports: {} };
    try {
      process.dlopen(mod, file);
      return mod.exports;
    } catch (e) {
      tried.push(`${file} (${e.message})`);
    }
  }
  const err = new Error(
    `corral: cannot load the native addon; run "npm run build" in ${__dirname}. Tried:\n  ` +
      tried.join('\n  '),
  );
  err.code = 'ERR_CORRAL_NATIVE_NOT_FOUND';
  throw err;
}

// Errors from native calls carry "[CODE] message".
function nativeError(e) {
  const m = /^\[([A-Z0-9_]+)\] ([\s\S]*)$/.exec(e && e.message);
  if (!m) return e;
  const err = new Error(m[2]);
  err.code = m[1];
  const errno = os.constants.errno[m[1]];
  if (errno !== undefined) err.errno = -errno;
  return err;
}

function callNative(fn) {
  try {
    return fn();
  } catch (e) {
    throw nativeError(e);
  }
}

const signalNames = Object.create(null);
for (const [name, num] of Object.entries(os.constants.signals)) signalNames[num] = name;

function signalNumber(signal) {
  if (signal === undefined || signal === null) return os.constants.signals.SIGTERM;
  if (typeof signal === 'number') return signal;
  const n = os.constants.signals[signal];
  if (n === undefined) {
    const err = new TypeError(`Unknown signal: ${signal}`);
    err.code = 'ERR_UNKNOWN_SIGNAL';
    throw err;
  }
  return n;
}

// ---------------------------------------------------------------- messages

function isInternal(message) {
  return (
    message !== null &&
    typeof message === 'object' &&
    typeof message.cmd === 'string' &&
    message.cmd.length > INTERNAL_PREFIX.length &&
    message.cmd.startsWith(INTERNAL_PREFIX)
  );
}

function checkMessage(message) {
  if (message === undefined) {
    const err = new TypeError('The "message" argument must be specified');
    err.code = 'ERR_MISSING_ARGS';
    throw err;
  }
  const t = typeof message;
  if (t !== 'string' && t !== 'object' && t !== 'number' && t !== 'boolean') {
    const err = new TypeError(
      'The "message" argument must be one of type string, object, number, or boolean.' +
        ` Received type ${t} (${util.inspect(message)})`,
    );
    err.code = 'ERR_INVALID_ARG_TYPE';
    throw err;
  }
}

// The native send copies a message only when it cannot be written at once, and never keeps
// the buffer it was given: JSON messages are encoded into one reused buffer, so a big
// message does not cost a fresh allocation (and its page faults) every time.
let scratch = Buffer.allocUnsafeSlow(64 * 1024);
const SCRATCH_MAX = 1024 * 1024; // bigger messages get a buffer of their own

// [kind, handle type, body]: body is JSON text or V8's serialization.
function encode(kind, message, handleType) {
  if (kind === MSG_ADVANCED) {
    // v8.serialize() with the two bytes written first: no copy of the serialized body.
    const ser = new v8.DefaultSerializer();
    ser.writeRawBytes(Buffer.from([kind, handleType]));
    ser.writeHeader();
    ser.writeValue(message);
    return ser.releaseBuffer();
  }
  const text = JSON.stringify(message);
  // At most 3 bytes per UTF-16 unit; count exactly only when that bound does not fit.
  let buf = scratch;
  if (text.length * 3 + 2 > buf.length) {
    const room = Buffer.byteLength(text) + 2;
    if (room > buf.length) {
      buf = Buffer.allocUnsafeSlow(room);
      if (room <= SCRATCH_MAX) scratch = buf;
    }
  }
  const n = buf.write(text, 2);
  buf[0] = kind;
  buf[1] = handleType;
  return buf.subarray(0, n + 2);
}

function decode(buf) {
  const kind = buf[0];
  const body = buf.subarray(2);
  const message = kind === MSG_ADVANCED ? v8.deserialize(body) : JSON.parse(body.toString());
  return { kind, handleType: buf[1], message };
}

// What a handle becomes on the wire: its fd, and a type for the receiver.
function handleToFd(handle) {
  if (handle === undefined || handle === null) return null;
  if (handle instanceof net.Socket && handle._handle && handle._handle.fd >= 0) {
    return { type: HANDLE_SOCKET, fd: handle._handle.fd };
  }
  if (handle instanceof net.Server && handle._handle && handle._handle.fd >= 0) {
    return { type: HANDLE_SERVER, fd: handle._handle.fd };
  }
  const err = new TypeError('This handle type cannot be sent');
  err.code = 'ERR_INVALID_HANDLE_TYPE';
  throw err;
}

function fdToHandle(type, fd) {
  if (type === HANDLE_SOCKET) return new net.Socket({ fd, readable: true, writable: true });
  if (type === HANDLE_SERVER) {
    const server = net.createServer();
    server.listen({ fd });
    return server;
  }
  fs.closeSync(fd);
  return undefined;
}

// Node's process.send / ChildProcess.send argument handling, on a native send function.
// Send callbacks fire once their message is written to the socket, as Node's do (so a worker
// may exit right after one and the message still arrives), and in order.
class SendCallbacks {
  constructor() {
    this.waiting = []; // [sequence number, callback]
  }
  // `r` is what the native send returned: true/0 written now; n queued as message n (-n: over
  // the high-water mark). Returns send()'s boolean.
  settle(r, callback) {
    if (r === true || r === false || r === 0) {
      this.written(Infinity); // earlier messages left before this one
      if (typeof callback === 'function') process.nextTick(callback, null);
      return r !== false;
    }
    if (typeof callback === 'function') this.waiting.push([Math.abs(r), callback]);
    return r > 0;
  }
  // Messages up to number `n` are out.
  written(n) {
    while (this.waiting.length && this.waiting[0][0] <= n) process.nextTick(this.waiting.shift()[1], null);
  }
  // The channel closed with messages still queued.
  fail() {
    for (const [, cb] of this.waiting.splice(0)) {
      const ex = new Error('Channel closed');
      ex.code = 'ERR_IPC_CHANNEL_CLOSED';
      process.nextTick(cb, ex);
    }
  }
}

function makeSend(target, sendRaw, serialization, callbacks = new SendCallbacks()) {
  return function send(message, handle, options, callback) {
    if (typeof handle === 'function') {
      callback = handle;
      handle = undefined;
      options = undefined;
    } else if (typeof options === 'function') {
      callback = options;
      options = undefined;
    } else if (options !== undefined && (options === null || typeof options !== 'object')) {
      const err = new TypeError('The "options" argument must be of type object.');
      err.code = 'ERR_INVALID_ARG_TYPE';
      throw err;
    }
    options = { swallowErrors: false, ...options };
    if (!target.connected) {
      const ex = new Error('Channel closed');
      ex.code = 'ERR_IPC_CHANNEL_CLOSED';
      if (typeof callback === 'function') process.nextTick(callback, ex);
      else process.nextTick(() => target.emit('error', ex));
      return false;
    }
    checkMessage(message);
    const h = handleToFd(handle);
    const kind = isInternal(message) ? MSG_INTERNAL : serialization() === 'advanced' ? MSG_ADVANCED : MSG_JSON;
    const data = encode(kind, message, h ? h.type : HANDLE_NONE);
    let ok;
    try {
      ok = sendRaw(data, h ? [h.fd] : []);
    } catch (e) {
      let err = nativeError(e);
      // The engine already saw the channel close (the JS events are on their way): report
      // it as Node does, asynchronously, as a closed channel.
      const closed = ['ERR_CORRAL_NO_SUCH_WORKER', 'EPIPE', 'ECONNRESET'].includes(err.code) ||
        /closed|disconnected/.test(err.message);
      if (closed) {
        err = new Error('Channel closed');
        err.code = 'ERR_IPC_CHANNEL_CLOSED';
      }
      if (typeof callback === 'function') {
        process.nextTick(callback, err);
        return false;
      }
      if (closed) {
        process.nextTick(() => target.emit('error', err));
        return false;
      }
      throw err;
    }
    if (h && !options.keepOpen) {
      // As Node: a sent socket or server is closed in the sender.
      if (h.type === HANDLE_SOCKET) handle.destroy();
      else handle.close();
    }
    return callbacks.settle(ok, callback);
  };
}

function deliver(target, buf, fds) {
  let decoded;
  try {
    decoded = decode(buf);
  } catch (e) {
    for (const fd of fds) fs.closeSync(fd);
    target.emit('error', e);
    return;
  }
  const handle = fds.length ? fdToHandle(decoded.handleType, fds[0]) : undefined;
  for (const fd of fds.slice(1)) fs.closeSync(fd);
  if (decoded.kind === MSG_INTERNAL || isInternal(decoded.message)) {
    target.emit('internalMessage', decoded.message, handle);
  } else {
    target.emit('message', decoded.message, handle);
  }
}

// A ref'd timer keeps the event loop alive while the cluster has work, like Node's child
// process and IPC handles; the native threads never do.
class KeepAlive {
  constructor() {
    this.timer = null;
  }
  set(on) {
    if (on && !this.timer) this.timer = setInterval(() => {}, 2 ** 30);
    else if (!on && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

// ---------------------------------------------------------------- Worker

function Worker(options) {
  if (!(this instanceof Worker)) return new Worker(options);
  EventEmitter.call(this);
  if (options === null || typeof options !== 'object') options = {};
  this.exitedAfterDisconnect = undefined;
  this.state = options.state || 'none';
  this.id = options.id | 0;
  if (options.process) {
    this.process = options.process;
    this.process.on('error', (code, signal) => this.emit('error', code, signal));
    this.process.on('message', (message, handle) => this.emit('message', message, handle));
  }
}
Object.setPrototypeOf(Worker.prototype, EventEmitter.prototype);
Object.setPrototypeOf(Worker, EventEmitter);

Worker.prototype.kill = function kill() {
  this.destroy.apply(this, arguments);
};
Worker.prototype.send = function send() {
  return this.process.send.apply(this.process, arguments);
};
Worker.prototype.isDead = function isDead() {
  return this.process.exitCode != null || this.process.signalCode != null;
};
Worker.prototype.isConnected = function isConnected() {
  return this.process.connected;
};

const cluster = new EventEmitter();
cluster.Worker = Worker;
cluster.SCHED_NONE = SCHED_NONE;
cluster.SCHED_RR = SCHED_RR;
cluster.isWorker = isMainThread && native.workerEnv() != null;
cluster.isPrimary = !cluster.isWorker;
cluster.isMaster = cluster.isPrimary;

if (cluster.isPrimary) setupPrimarySide();
else setupWorkerSide();

// For TypeScript compiled to CommonJS without esModuleInterop (`import cluster from`).
Object.defineProperty(cluster, 'default', { value: cluster, enumerable: false });

module.exports = cluster;

// ---------------------------------------------------------------- primary

function setupPrimarySide() {
  let policy = { none: SCHED_NONE, rr: SCHED_RR }[process.env.NODE_CLUSTER_SCHED_POLICY];
  const corralPolicy = { shared: SCHED_NONE, none: SCHED_NONE, rr: SCHED_RR }[process.env.CORRAL_SCHED_POLICY];
  if (corralPolicy !== undefined) policy = corralPolicy;
  cluster.schedulingPolicy = policy === undefined ? SCHED_RR : policy;
  cluster.settings = {};
  cluster.workers = {};

  const intercom = new EventEmitter();
  const keepAlive = new KeepAlive();
  const live = new Map(); // id -> Worker, until its exit event
  let engine = null;
  let initialized = false;
  const adopted = new Set(); // every worker id this primary has wrapped

  function getEngine() {
    if (engine) return engine;
    const name = cluster.schedulingPolicy === SCHED_NONE ? 'shared' : 'rr';
    engine = callNative(() => new native.NativePrimary(name, 32, onBatch));
    return engine;
  }

  cluster.setupPrimary = function setupPrimary(options) {
    const settings = {
      args: process.argv.slice(2),
      exec: process.argv[1],
      execArgv: process.execArgv,
      silent: false,
      ...cluster.settings,
      ...options,
    };
    if (
      settings.execArgv.some((s) => s.startsWith('--prof')) &&
      !settings.execArgv.some((s) => s.startsWith('--logfile='))
    ) {
      settings.execArgv = [...settings.execArgv, '--logfile=v8-%p.log'];
    }
    cluster.settings = settings;
    if (initialized === true) return process.nextTick(setupSettingsNT, settings);
    initialized = true;
    if (cluster.schedulingPolicy !== SCHED_NONE && cluster.schedulingPolicy !== SCHED_RR) {
      throw new Error(`Bad cluster.schedulingPolicy: ${cluster.schedulingPolicy}`);
    }
    process.nextTick(setupSettingsNT, settings);
  };
  cluster.setupMaster = cluster.setupPrimary;

  function setupSettingsNT(settings) {
    cluster.emit('setup', settings);
  }

  // settings.stdio (or silent) as child_process.fork() takes it: a string ('pipe', 'ignore',
  // 'inherit', 'overlapped') means three of it plus 'ipc'; an array needs exactly one 'ipc'
  // and may be longer than 3, entry i being the worker's fd i. Returns the native setup of each
  // fd, and the streams whose fds the worker gets (paused once it started, as Node does).
  // The 'ipc' entry's fd gets nothing (/dev/null below 3): corral's channels are placed by
  // the engine above the last entry.
  function stdioOf(settings) {
    let stdio = settings.stdio;
    if (typeof stdio === 'string') stdio = stdioStringToArray(stdio);
    else if (!Array.isArray(stdio)) stdio = stdioStringToArray(settings.silent ? 'pipe' : 'inherit');
    else if (!stdio.includes('ipc')) {
      const err = new Error("Forked processes must have an IPC channel, missing value 'ipc' in options.stdio");
      err.code = 'ERR_CHILD_PROCESS_IPC_REQUIRED';
      throw err;
    }
    // As Node's getValidStdio: padded in place (cluster.settings.stdio shows it).
    while (stdio.length < 3) stdio.push(undefined);
    let ipc = false;
    const wraps = [];
    const entries = stdio.map((s, i) => {
      if (s === null || s === undefined) s = i < 3 ? 'pipe' : 'ignore';
      if (s === 'ignore') return i < 3 ? 'ignore' : 'close';
      if (s === 'pipe' || s === 'overlapped' || (typeof s === 'number' && s < 0)) return 'pipe';
      if (s === 'ipc') {
        if (ipc) {
          const err = new Error('Child process can have only one IPC pipe');
          err.code = 'ERR_IPC_ONE_PIPE';
          throw err;
        }
        ipc = true;
        return i < 3 ? 'ignore' : 'close';
      }
      if (s === 'inherit') return i < 3 ? 'inherit' : i;
      if (typeof s === 'number' || typeof s.fd === 'number') {
        const fd = typeof s === 'number' ? s : s.fd;
        return fd === i && i < 3 ? 'inherit' : fd;
      }
      const handle = [s, s.handle, s._handle].find(isWrap);
      if (handle) {
        wraps.push({ stream: s, handle });
        return handle.fd;
      }
      if (ArrayBuffer.isView(s) || typeof s === 'string') {
        const err = new TypeError(
          `Asynchronous forks do not support Buffer, TypedArray, DataView or string input: ${util.inspect(s)}`,
        );
        err.code = 'ERR_INVALID_SYNC_FORK_INPUT';
        throw err;
      }
      throw invalidStdio(s);
    });
    return { entries, wraps };
  }

  function stdioStringToArray(stdio) {
    switch (stdio) {
      case 'ignore':
      case 'overlapped':
      case 'pipe':
        return [stdio, stdio, stdio, 'ipc'];
      case 'inherit':
        return [0, 1, 2, 'ipc'];
      default:
        throw invalidStdio(stdio);
    }
  }

  function invalidStdio(value) {
    let shown = util.inspect(value);
    if (shown.length > 128) shown = `${shown.slice(0, 128)}...`;
    const err = new TypeError(`The argument 'stdio' is invalid. Received ${shown}`);
    err.code = 'ERR_INVALID_ARG_VALUE';
    return err;
  }

  let wrapTypes;
  function isWrap(h) {
    if (h === null || typeof h !== 'object') return false;
    wrapTypes = wrapTypes || ['pipe_wrap', 'tty_wrap', 'tcp_wrap', 'udp_wrap'].map((m) => {
      const b = process.binding(m);
      return b.Pipe || b.TTY || b.TCP || b.UDP;
    });
    return wrapTypes.some((T) => h instanceof T);
  }

  // The worker reads or writes these streams' fds now: the primary stops reading them.
  function pauseWrapped(wraps) {
    for (const { stream, handle } of wraps) {
      handle.reading = false;
      if (typeof handle.readStop === 'function') handle.readStop();
      if (stream !== handle && typeof stream.pause === 'function') {
        stream.pause();
        stream.readableFlowing = false;
        if (stream._readableState) stream._readableState.reading = false;
      }
    }
  }

  // As lib/internal/cluster/primary.js: with an inspector flag in execArgv (or NODE_OPTIONS)
  // each worker gets --inspect-port, from settings.inspectPort (a number, or a function called
  // per fork) or the primary's debugPort + 1, + 2, ... (wrapping to 1024 after 65535).
  const kInspectArgRegex = /--inspect(?:-brk|-port)?|--debug-port/;
  let debugPortOffset = 1;
  function isUsingInspector(execArgv) {
    return execArgv.some((arg) => kInspectArgRegex.test(String(arg))) ||
      kInspectArgRegex.test(process.env.NODE_OPTIONS || '');
  }
  function badPort(port) {
    const shown = port === null || port === undefined ? String(port) : typeof port === 'number' ? `type number (${port})` : `type ${typeof port} (${util.inspect(port)})`;
    const ex = new RangeError(`Port should be >= 0 and < 65536. Received ${shown}.`);
    ex.code = 'ERR_SOCKET_BAD_PORT';
    return ex;
  }
  function getInspectPort(inspectPort) {
    if (typeof inspectPort === 'function') {
      inspectPort = inspectPort();
    } else if (inspectPort == null) {
      inspectPort = process.debugPort + debugPortOffset;
      if (inspectPort > 65535) inspectPort = inspectPort - 65535 + 1024 - 1;
      debugPortOffset++;
    }
    const n = typeof inspectPort === 'string' && inspectPort.trim() !== '' ? Number(inspectPort) : inspectPort;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 65535) throw badPort(inspectPort);
    return n;
  }

  function spawnOptions(env) {
    const s = cluster.settings;
    const workerEnv = { ...env };
    for (const k of Object.keys(workerEnv)) workerEnv[k] = String(workerEnv[k]);
    if (s.serialization === 'advanced') workerEnv[ENV_SERIALIZATION] = 'advanced';
    if (s.inspectPort === null) throw badPort(null);
    const execArgv = [...s.execArgv];
    if (isUsingInspector(s.execArgv)) execArgv.push(`--inspect-port=${getInspectPort(s.inspectPort)}`);
    const stdio = stdioOf(s);
    return {
      program: process.execPath,
      args: [...execArgv, s.exec, ...(s.args || [])].map(String),
      env: workerEnv,
      cwd: s.cwd === undefined ? undefined : String(s.cwd),
      stdio: stdio.entries,
      wraps: stdio.wraps, // not for the addon: paused once the worker started
      uid: s.uid,
      gid: s.gid,
    };
  }

  // Ids come from the engine (from 1, never reused), shared with workers the supervisor starts.
  function createWorkerProcess(env) {
    const opts = spawnOptions(env);
    let spawned;
    try {
      spawned = callNative(() => getEngine().spawn(opts));
    } catch (e) {
      // As Node's spawn: an OS error reads "spawn EBADF" and carries errno, code, syscall.
      if (typeof e.errno !== 'number' || e.syscall !== undefined) throw e;
      const err = new Error(`spawn ${e.code}`);
      err.errno = e.errno;
      err.code = e.code;
      err.syscall = 'spawn';
      throw err;
    }
    pauseWrapped(opts.wraps);
    return new PrimaryChildProcess(spawned, () => cluster.settings.serialization);
  }

  class PrimaryChildProcess extends EventEmitter {
    constructor(spawned, serialization) {
      super();
      this.workerId = spawned.id;
      this.pid = spawned.pid;
      this.exitCode = null;
      this.signalCode = null;
      this.killed = false;
      this.connected = true;
      this.spawnfile = process.execPath;
      // As Node's: 'close' once the process exited and its stdout, stderr and extra pipes
      // closed; the pipes are duplex (a socket pair), only stdin is not readable.
      this._closesNeeded = 1;
      this._closesGot = 0;
      this.stdio = spawned.stdio.map((fd, i) => {
        if (fd < 0) return null;
        const socket = new net.Socket({ fd, readable: i > 0, writable: true });
        if (i > 0) {
          this._closesNeeded++;
          socket.on('close', () => this._maybeClose());
        }
        return socket;
      });
      [this.stdin, this.stdout, this.stderr] = this.stdio;
      this._sendCallbacks = new SendCallbacks();
      this.send = makeSend(this, (data, fds) => getEngine().send(this.workerId, data, fds), serialization, this._sendCallbacks);
    }
    kill(signal) {
      const n = signalNumber(signal);
      if (this.exitCode !== null || this.signalCode !== null) return false;
      try {
        engine.kill(this.workerId, n);
      } catch (e) {
        return false;
      }
      this.killed = true;
      return true;
    }
    disconnect() {
      if (!this.connected) {
        const ex = new Error('IPC channel is already disconnected');
        ex.code = 'ERR_IPC_DISCONNECTED';
        this.emit('error', ex);
        return;
      }
      // child_process level, as Node's ChildProcess.disconnect(): the channel is cut now, not
      // the graceful cluster path (worker.disconnect()). The worker sees its channel end
      // without having said exitedAfterDisconnect, so it exits at once.
      this.connected = false;
      try {
        engine.cutOff(this.workerId);
      } catch {
        // Already gone: its exit event is on its way.
      }
      process.nextTick(() => this.emit('disconnect'));
    }
    ref() {}
    unref() {}
    // After 'exit' (next tick): what nobody reads is read through, so the pipes end and
    // 'close' can come (Node's flushStdio).
    _exited() {
      for (const s of this.stdio) if (s && s.readable) s.resume();
      this._maybeClose();
    }
    _maybeClose() {
      if (++this._closesGot === this._closesNeeded) this.emit('close', this.exitCode, this.signalCode);
    }
  }

  function removeWorker(worker) {
    delete cluster.workers[worker.id];
    if (Object.keys(cluster.workers).length === 0) intercom.emit('disconnect');
  }

  cluster.fork = function fork(env) {
    cluster.setupPrimary();
    let p;
    try {
      p = createWorkerProcess(env);
    } catch (e) {
      // node:cluster takes the id before it starts the process: a fork() that throws spends it.
      callNative(() => getEngine().skipWorkerId());
      throw e;
    }
    return adopt(p.workerId, p);
  };

  // Wires a worker the way node:cluster's fork() does (also for workers the supervisor starts).
  function adopt(id, workerProcess) {
    const worker = new Worker({ id, process: workerProcess });
    adopted.add(id);
    live.set(id, worker);
    keepAlive.set(true);

    worker.on('message', function (message, handle) {
      cluster.emit('message', this, message, handle);
    });

    worker.process.once('exit', (exitCode, signalCode) => {
      if (!worker.isConnected()) removeWorker(worker);
      worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
      worker.state = 'dead';
      worker.emit('exit', exitCode, signalCode);
      cluster.emit('exit', worker, exitCode, signalCode);
    });

    worker.process.once('disconnect', () => {
      if (worker.isDead()) removeWorker(worker);
      worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
      worker.state = 'disconnected';
      worker.emit('disconnect');
      cluster.emit('disconnect', worker);
    });

    worker.process.on('internalMessage', (message) => onInternal(worker, message));
    process.nextTick(emitForkNT, worker);
    cluster.workers[worker.id] = worker;
    return worker;
  }

  function emitForkNT(worker) {
    cluster.emit('fork', worker);
  }

  cluster.disconnect = function disconnect(cb) {
    const workers = Object.keys(cluster.workers);
    if (workers.length === 0) {
      process.nextTick(() => intercom.emit('disconnect'));
    } else {
      for (const worker of Object.values(cluster.workers)) {
        if (worker.isConnected()) worker.disconnect();
      }
    }
    if (typeof cb === 'function') intercom.once('disconnect', cb);
  };

  function onInternal(worker, message) {
    if (message === null || typeof message !== 'object' || message.cmd !== 'NODE_CLUSTER') return;
    if (message.act === 'listening') {
      const info = {
        addressType: message.addressType,
        address: message.address,
        port: message.port,
        fd: message.fd,
      };
      worker.state = 'listening';
      worker.emit('listening', info);
      cluster.emit('listening', worker, info);
    } else if (message.act === 'exitedAfterDisconnect') {
      worker.exitedAfterDisconnect = true;
      // The worker closes its channel on this acknowledgement.
      if (message.seq !== undefined && worker.process.connected) {
        worker.process.send({ cmd: 'NODE_CLUSTER', ack: message.seq }, () => {});
      }
    }
  }

  Worker.prototype.disconnect = function disconnect() {
    this.exitedAfterDisconnect = true;
    if (this.process.connected) {
      try {
        engine.disconnect(this.id);
      } catch {
        // Already disconnected: its events are on their way.
      }
    }
    removeWorker(this);
    return this;
  };

  Worker.prototype.destroy = function destroy(signo) {
    this.process.kill(signo || 'SIGTERM');
  };

  let supervisor = null;

  cluster.supervise = function supervise(options = {}) {
    if (supervisor) {
      const err = new Error('supervise() was already called');
      err.code = 'ERR_CORRAL_WRONG_STATE';
      throw err;
    }
    const o = validateSupervise(options);
    cluster.setupPrimary();
    const spawn = spawnOptions(o.heartbeatInterval ? { [ENV_HEARTBEAT]: String(o.heartbeatInterval) } : {});
    const eng = getEngine();
    try {
      // The engine checks every range (corral-core's limits, the same for C).
      eng.supervise(o.native, spawn);
    } catch (e) {
      const err = nativeError(e);
      const m = err.code === 'ERR_CORRAL_INVALID_OPTION' && /^([\w.]+): ([\s\S]*)$/.exec(err.message);
      throw m ? invalidOption(m[1], m[2]) : err;
    }
    pauseWrapped(spawn.wraps);
    supervisor = new Supervisor(eng, o);
    // Alive until the supervisor's shutdown completes (its workers start on the engine thread).
    keepAlive.set(true);
    return supervisor;
  };

  class Supervisor extends EventEmitter {
    constructor(eng, o) {
      super();
      this._engine = eng;
      this._reloads = [];
      this._shutdowns = [];
      this._scales = [];
      this._shutdownDone = null;
      for (const sig of o.shutdownSignals) {
        process.on(sig, () => {
          this.shutdown().then((r) => process.exit(r.clean ? 0 : 1));
        });
      }
      for (const sig of o.reloadSignals) {
        process.on(sig, () => {
          this.reload().catch((e) => this.emit('error', e));
        });
      }
    }

    // Replaces every worker, one batch at a time; resolves with the report
    // ({ ok, replaced, reason, duration }) once it ended, successfully or not.
    reload() {
      try {
        this._engine.supervisorCall('reload', undefined);
      } catch (e) {
        return Promise.reject(nativeError(e));
      }
      return new Promise((resolve) => this._reloads.push(resolve));
    }

    // Changes the worker count; resolves once the count is reached (new ones listening,
    // removed ones drained).
    scale(n) {
      if (!Number.isInteger(n) || n < 1) {
        return Promise.reject(invalidOption('workers', 'must be an integer >= 1'));
      }
      try {
        this._engine.supervisorCall('scale', n);
      } catch (e) {
        return Promise.reject(nativeError(e));
      }
      return new Promise((resolve) => {
        this._scales.push({ n, resolve });
        this._checkScales();
      });
    }

    // Graceful shutdown; resolves with { clean } when every worker is gone.
    shutdown() {
      if (this._shutdownDone) return Promise.resolve(this._shutdownDone);
      if (this._shutdowns.length === 0) {
        try {
          this._engine.supervisorCall('shutdown', undefined);
        } catch (e) {
          return Promise.reject(nativeError(e));
        }
      }
      return new Promise((resolve) => this._shutdowns.push(resolve));
    }

    // A snapshot: { workers: [{slot, id, pid, state, handedOff, inflight, active, restarts,
    // lastRestartCause, uptime, rss, cpu}], restarts: {cause: n}, crashLoopingSlots, reloads,
    // endpoint }.
    metrics() {
      return callNative(() => this._engine.supervisorMetrics());
    }

    // The same figures in Prometheus text.
    prometheus() {
      return callNative(() => this._engine.supervisorPrometheus());
    }

    _event(e) {
      const type = e.type;
      delete e.type;
      if (type === 'reload') {
        const resolve = this._reloads.shift();
        this.emit('reload', e);
        if (resolve) resolve(e);
      } else if (type === 'scaled') {
        this.emit('scale', e);
      } else {
        this.emit(type, e);
      }
    }

    _checkScales() {
      const listening = Object.values(cluster.workers).filter((w) => w.state === 'listening').length;
      this._scales = this._scales.filter((s) => {
        if (live.size === s.n && listening === s.n) {
          s.resolve({ workers: s.n });
          return false;
        }
        return true;
      });
    }

    _shutdownComplete(clean) {
      this._shutdownDone = { clean };
      if (live.size === 0) keepAlive.set(false);
      for (const resolve of this._shutdowns.splice(0)) resolve(this._shutdownDone);
    }
  }

  cluster.on('listening', () => supervisor && supervisor._checkScales());
  cluster.on('exit', () => supervisor && supervisor._checkScales());

  // Engine events (from its thread) and worker messages (read on this thread from each
  // worker's message channel, bindings/node/src/messages.rs) arrive here.
  function onBatch(b) {
    onEvents(decodeBatch(b));
  }

  function onEvents(events) {
    for (const ev of events) {
      const worker = live.get(ev.worker);
      if ((ev.kind === EV.DISCONNECT || ev.kind === EV.EXIT) && engine) {
        // What the worker sent before it went away comes first, as on node:cluster's one
        // channel.
        onEvents(decodeBatch(engine.drainMessages(ev.worker, true)));
      }
      switch (ev.kind) {
        case EV.FORK: {
          if (adopted.has(ev.worker)) {
            // Started by cluster.fork(): already known.
            for (const fd of ev.fds) fs.closeSync(fd);
            break;
          }
          // Started by the supervisor.
          const piped = ev.data || Buffer.alloc(3);
          let k = 0;
          const stdio = Array.from(piped, (p) => (p ? ev.fds[k++] : -1));
          const p = new PrimaryChildProcess({ id: ev.worker, pid: ev.pid, stdio }, () => cluster.settings.serialization);
          adopt(ev.worker, p);
          break;
        }
        case EV.SUPERVISOR:
          if (supervisor) supervisor._event(JSON.parse(ev.message));
          break;
        case EV.SHUTDOWN_COMPLETE:
          if (supervisor) supervisor._shutdownComplete(ev.flag);
          break;
        case EV.ONLINE:
          if (!worker) break;
          // Its messages are read from now on, so none overtakes 'online'.
          engine.watchMessages(ev.worker, onBatch);
          worker.state = 'online';
          worker.emit('online');
          cluster.emit('online', worker);
          break;
        case EV.MESSAGE:
          // Nothing is delivered once the channel is disconnected (worker.process.disconnect()
          // cuts it before what the worker sent is read), as Node's closed channel.
          if (!worker || !worker.process.connected) {
            for (const fd of ev.fds) fs.closeSync(fd);
            break;
          }
          deliver(worker.process, ev.data, ev.fds);
          break;
        case EV.FLUSHED: {
          // Messages queued by worker.send() were written (or lost with a closed channel).
          if (!worker) break;
          const n = engine.written(ev.worker);
          if (n < 0) worker.process._sendCallbacks.fail();
          else worker.process._sendCallbacks.written(n);
          break;
        }
        case EV.DISCONNECT:
          if (!worker || !worker.process.connected) break;
          worker.process.connected = false;
          worker.process.emit('disconnect');
          break;
        case EV.EXIT: {
          if (!worker) break;
          const p = worker.process;
          if (p.connected) {
            // The engine reports the channel's end before the exit; keep Node's pairing.
            p.connected = false;
            p.emit('disconnect');
          }
          p._sendCallbacks.fail();
          p.exitCode = ev.code === null || ev.code === undefined ? null : ev.code;
          p.signalCode = ev.signal ? signalNames[ev.signal] || null : null;
          live.delete(ev.worker);
          if (live.size === 0 && (!supervisor || supervisor._shutdownDone)) keepAlive.set(false);
          p.emit('exit', p.exitCode, p.signalCode);
          process.nextTick(() => p._exited());
          break;
        }
        case EV.ERROR: {
          const err = new Error(ev.message);
          err.code = ev.syscall || 'ERR_CORRAL_PROTOCOL';
          if (ev.flag) {
            // The engine failed (ERR_CORRAL_ENGINE): the events after this one in the batch
            // are the exits of its killed workers and the end of the cluster. An 'error'
            // nobody listens for is thrown, as any EventEmitter's is, after they are handled.
            const target = supervisor && supervisor.listenerCount('error') > 0 ? supervisor : cluster;
            try {
              target.emit('error', err);
            } catch (e) {
              process.nextTick(() => { throw e; });
            }
            break;
          }
          if (worker && worker.listenerCount('error') > 0) worker.emit('error', err);
          if (worker && ev.syscall === 'ERR_CORRAL_PROTOCOL' && worker.process.connected) {
            // Its message channel broke: cut it off entirely, as a broken single channel
            // would (it exits at the end of its channel; a supervisor replaces it).
            try {
              engine.cutOff(ev.worker);
            } catch {
              // already gone
            }
          }
          break;
        }
        default:
          break;
      }
    }
  }
}

// ---------------------------------------------------------------- supervise() options

function invalidOption(name, why) {
  const err = new TypeError(`supervise(): ${name} ${why}`);
  err.code = 'ERR_CORRAL_INVALID_OPTION';
  return err;
}

const SUPERVISE_KEYS = {
  '': ['workers', 'restart', 'shutdown', 'reload', 'heartbeat', 'recycle', 'metrics'],
  restart: ['initialDelay', 'maxDelay', 'factor', 'jitter', 'resetAfter', 'crashLoop', 'noRestartExitCodes'],
  'restart.crashLoop': ['exits', 'window'],
  shutdown: ['signals', 'timeout'],
  reload: ['signals', 'readyTimeout', 'probation', 'batch', 'waitReady'],
  heartbeat: ['interval', 'timeout'],
  recycle: ['maxRss', 'maxConnections', 'jitter'],
  metrics: ['port', 'host'],
};

function section(obj, name) {
  if (obj === undefined) return {};
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw invalidOption(name || 'options', 'must be an object');
  }
  for (const k of Object.keys(obj)) {
    if (!SUPERVISE_KEYS[name].includes(k)) throw invalidOption(name ? `${name}.${k}` : k, 'is not a known option');
  }
  return obj;
}

function num(obj, key, name, dflt, { min = 0, integer = false, max = Infinity } = {}) {
  const v = obj[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
    const range = max === Infinity ? `>= ${min}` : `between ${min} and ${max}`;
    throw invalidOption(name, `must be ${integer ? 'an integer' : 'a number'} ${range} (got ${util.inspect(v)})`);
  }
  return v;
}

function signals(obj, name, dflt) {
  const v = obj.signals;
  if (v === undefined) return dflt;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string' || os.constants.signals[s] === undefined)) {
    throw invalidOption(`${name}.signals`, 'must be an array of signal names like "SIGTERM"');
  }
  return v;
}

function validateSupervise(options) {
  const top = section(options, '');
  let workers = top.workers === undefined ? 'auto' : top.workers;
  if (workers === 'auto') workers = native.availableParallelism();
  else if (!Number.isInteger(workers) || workers < 1) {
    throw invalidOption('workers', `must be "auto" or an integer >= 1 (got ${util.inspect(top.workers)})`);
  }
  const r = section(top.restart, 'restart');
  const cl = section(r.crashLoop, 'restart.crashLoop');
  const sh = section(top.shutdown, 'shutdown');
  const rl = section(top.reload, 'reload');
  const hb = top.heartbeat === undefined ? undefined : section(top.heartbeat, 'heartbeat');
  const rc = section(top.recycle, 'recycle');
  const m = top.metrics === undefined ? undefined : section(top.metrics, 'metrics');
  const codes = r.noRestartExitCodes === undefined ? [] : r.noRestartExitCodes;
  if (!Array.isArray(codes) || codes.some((c) => !Number.isInteger(c) || c < 0 || c > 255)) {
    throw invalidOption('restart.noRestartExitCodes', 'must be an array of exit codes (0-255)');
  }
  if (rl.waitReady !== undefined && typeof rl.waitReady !== 'boolean') {
    throw invalidOption('reload.waitReady', 'must be a boolean');
  }
  const heartbeatInterval = hb ? num(hb, 'interval', 'heartbeat.interval', 1000, { min: 1 }) : undefined;
  const heartbeatTimeout = hb ? num(hb, 'timeout', 'heartbeat.timeout', 5000, { min: 1 }) : undefined;
  if (hb && heartbeatTimeout <= heartbeatInterval) {
    throw invalidOption('heartbeat.timeout', 'must be greater than heartbeat.interval');
  }
  const maxRss = num(rc, 'maxRss', 'recycle.maxRss', 0, { min: 0 });
  const maxConnections = num(rc, 'maxConnections', 'recycle.maxConnections', 0, { min: 0, integer: true });
  const port = m ? num(m, 'port', 'metrics.port', 9464, { min: 0, max: 65535, integer: true }) : undefined;
  if (m && m.host !== undefined && typeof m.host !== 'string') throw invalidOption('metrics.host', 'must be a string');
  return {
    heartbeatInterval,
    shutdownSignals: signals(sh, 'shutdown', []),
    reloadSignals: signals(rl, 'reload', []),
    native: {
      workers,
      initialDelay: num(r, 'initialDelay', 'restart.initialDelay', 100),
      maxDelay: num(r, 'maxDelay', 'restart.maxDelay', 30000),
      factor: num(r, 'factor', 'restart.factor', 2, { min: 1 }),
      jitter: num(r, 'jitter', 'restart.jitter', 0.2, { max: 1 }),
      resetAfter: num(r, 'resetAfter', 'restart.resetAfter', 30000),
      crashLoopExits: num(cl, 'exits', 'restart.crashLoop.exits', 5, { min: 1, integer: true }),
      crashLoopWindow: num(cl, 'window', 'restart.crashLoop.window', 60000),
      noRestartExitCodes: codes,
      shutdownTimeout: num(sh, 'timeout', 'shutdown.timeout', 30000),
      readyTimeout: num(rl, 'readyTimeout', 'reload.readyTimeout', 10000),
      probation: num(rl, 'probation', 'reload.probation', 1000),
      batch: num(rl, 'batch', 'reload.batch', 1, { min: 1, integer: true }),
      waitReady: !!rl.waitReady,
      heartbeatInterval,
      heartbeatTimeout,
      maxRss: maxRss > 0 ? Math.ceil(maxRss) : undefined,
      maxConnections: maxConnections > 0 ? maxConnections : undefined,
      recycleJitter: num(rc, 'jitter', 'recycle.jitter', 0.1, { max: 1 }),
      metricsHost: m ? m.host || '127.0.0.1' : undefined,
      metricsPort: port,
    },
  };
}

// ---------------------------------------------------------------- worker

// The libuv handle classes net wraps (tcp_wrap's TCP, pipe_wrap's Pipe), taken from a socket net
// creates itself: process.binding() is deprecated (DEP0111), a warning under
// --pending-deprecation and an exception under --throw-deprecation. connect() creates the handle
// at once; the TCP connection would start on a later tick and the pipe one fails (ENOTDIR, a path
// under /dev/null cannot exist), and destroy() closes the handle first. Looked up on first use.
// The constructor's argument is the handle type of tcp_wrap.h and pipe_wrap.h (SOCKET 0, SERVER 1;
// test/deprecation.test.js checks both against the bindings on every tested Node).
const HANDLE_TYPE = { SOCKET: 0, SERVER: 1 };
// libuv's UV_TCP_IPV6ONLY (uv.h), which net.js passes to _listen2 in `flags` for ipv6Only.
const UV_TCP_IPV6ONLY = 1;
const handleClasses = {};
function handleClass(pipe) {
  const kind = pipe ? 'Pipe' : 'TCP';
  if (!handleClasses[kind]) {
    const probe = new net.Socket();
    probe.on('error', () => {});
    probe.connect(pipe ? { path: '/dev/null/corral' } : { host: '127.0.0.1', port: 9 });
    const handle = probe._handle;
    probe.destroy();
    if (!handle || handle.constructor.name !== kind) {
      throw new Error(`corral: cannot find net's ${kind} handle class on Node ${process.version}`);
    }
    handleClasses[kind] = handle.constructor;
  }
  return handleClasses[kind];
}

function setupWorkerSide() {
  const serialization = process.env[ENV_SERIALIZATION] === 'advanced' ? 'advanced' : 'json';
  delete process.env[ENV_SERIALIZATION];

  const keepAlive = new KeepAlive();
  const pending = new Map(); // listen request id -> callback(event)
  const servers = new Map(); // listener id -> fake or real handle (rr: fake)
  const handles = new Set(); // handles to close on disconnect
  const indexes = new Map();
  let nextReq = 1;
  let closing = false;

  const nw = callNative(() => new native.NativeWorker((b) => onEvents(decodeBatch(b))));
  const listeningServers = new Set();
  const heartbeatMs = Number(process.env[ENV_HEARTBEAT]);
  delete process.env[ENV_HEARTBEAT];
  if (heartbeatMs > 0) {
    // Sent from the event loop: a blocked loop stops the beats and the watchdog notices.
    setInterval(() => {
      if (!connected) return;
      let active = 0;
      for (const srv of listeningServers) active += srv._connections || 0;
      try {
        nw.heartbeat(active);
      } catch {
        // Channel closing: the disconnect path takes over.
      }
    }, heartbeatMs).unref();
  }
  const worker = new Worker({ id: nw.id, process, state: 'online' });
  cluster.worker = worker;
  keepAlive.set(true);

  let connected = true;
  Object.defineProperty(process, 'connected', {
    configurable: true,
    enumerable: true,
    get: () => connected,
  });
  // process.channel, as Node's Control (lib/internal/child_process.js): while the channel is
  // open it keeps the worker alive unless unref()'d; null from the disconnect on.
  class Control extends EventEmitter {
    ref() {
      if (connected) keepAlive.set(true);
    }
    unref() {
      keepAlive.set(false);
    }
    get fd() {
      return nw.fd;
    }
  }
  process.channel = new Control();
  Object.defineProperty(process, '_channel', {
    configurable: true,
    enumerable: false,
    get: util.deprecate(() => process.channel, '_channel is deprecated. Use ChildProcess.channel instead.', 'DEP0129'),
    set: util.deprecate((v) => {
      process.channel = v;
    }, '_channel is deprecated. Use ChildProcess.channel instead.', 'DEP0129'),
  });
  const sendCallbacks = new SendCallbacks();
  process.send = makeSend(process, (data, fds) => nw.send(data, fds), () => serialization, sendCallbacks);
  process.disconnect = function disconnect() {
    if (!connected) {
      const ex = new Error('IPC channel is already disconnected');
      ex.code = 'ERR_IPC_DISCONNECTED';
      process.emit('error', ex);
      return;
    }
    closing = true;
    connected = false;
    process.channel = null;
    try {
      nw.disconnect();
      sendCallbacks.written(Infinity); // the goodbye went out after every queued message
    } catch (e) {
      sendCallbacks.fail();
      throw e;
    } finally {
      keepAlive.set(false);
      process.nextTick(() => process.emit('disconnect'));
    }
  };

  process.once('disconnect', () => {
    worker.emit('disconnect');
    if (!worker.exitedAfterDisconnect) {
      // The primary is gone or cut us off: exit at once, as node:cluster does.
      process.exit(0);
    }
  });
  // Acknowledgements from the primary ({ ack: seq }), as node:cluster's internal messages
  // carry them.
  const acks = new Map(); // seq -> callback
  let nextSeq = 0;
  process.on('internalMessage', (message) => {
    if (message === null || typeof message !== 'object' || message.cmd !== 'NODE_CLUSTER') return;
    const cb = acks.get(message.ack);
    if (cb === undefined) return;
    acks.delete(message.ack);
    cb();
  });

  function sendInternal(message, onAck) {
    if (!connected) return;
    const m = { cmd: 'NODE_CLUSTER', ...message };
    if (onAck) {
      m.seq = nextSeq++;
      acks.set(m.seq, onAck);
    }
    nw.send(encode(MSG_INTERNAL, m, HANDLE_NONE), []);
  }

  // The worker's own disconnect: the primary learns exitedAfterDisconnect first, and the
  // channel closes once it acknowledged (node:cluster's round trip), so the primary never
  // sees an unexplained disconnect and 'disconnect' comes after what the caller queued with
  // process.nextTick() and setImmediate(). The close waits for the check phase of the turn
  // the acknowledgement arrived in: the receive thread (CORRAL_NODE_RECV=thread) can hand
  // it over within the same callback as the message the call was made from, which Node's
  // channel never does.
  function disconnectAfterAck() {
    sendInternal({ act: 'exitedAfterDisconnect' }, () => {
      setImmediate(() => {
        if (connected) process.disconnect();
      });
    });
  }

  Worker.prototype.disconnect = function disconnect() {
    if (this.state !== 'disconnecting' && this.state !== 'destroying') {
      this.state = 'disconnecting';
      workerDisconnect.call(this, false);
    }
    return this;
  };

  Worker.prototype.destroy = function destroy() {
    if (this.state === 'destroying') return;
    this.exitedAfterDisconnect = true;
    if (!this.isConnected()) {
      process.exit(0);
    } else {
      this.state = 'destroying';
      disconnectAfterAck();
      process.once('disconnect', () => process.exit(0));
    }
  };

  function workerDisconnect(primaryInitiated) {
    this.exitedAfterDisconnect = true;
    let waitingCount = 1;
    function checkWaitingCount() {
      waitingCount--;
      if (waitingCount === 0) {
        if (primaryInitiated) {
          if (connected) process.disconnect();
          return;
        }
        // What the worker sends until the primary's acknowledgement is still delivered; after
        // the 'disconnect' event, sends fail with ERR_IPC_CHANNEL_CLOSED.
        disconnectAfterAck();
      }
    }
    for (const handle of handles) {
      waitingCount++;
      const owner = handle[ownerSymbol(handle)];
      if (owner && typeof owner.close === 'function') owner.close(checkWaitingCount);
      else handle.close(checkWaitingCount);
    }
    handles.clear();
    checkWaitingCount();
  }

  // net.Server keeps its owner under a symbol named 'owner_symbol'.
  let ownerSym;
  function ownerSymbol(handle) {
    if (ownerSym) return ownerSym;
    ownerSym = Object.getOwnPropertySymbols(handle).find((s) => s.description === 'owner_symbol');
    return ownerSym;
  }

  // ---- listening through the primary

  const kExclusive = Symbol('corral.exclusive');
  // readableAll/writableAll: net.Server.listen passes them to node:cluster's request, not to
  // _listen2, and chmods only a handle it already has (never a worker's): kept for the request.
  const kPipeMode = Symbol('corral.pipeMode');
  const origListen = net.Server.prototype.listen;
  net.Server.prototype.listen = function listen(...args) {
    const o = args[0];
    const isObject = o !== null && typeof o === 'object';
    // The options object, read when _listen2 runs: Node 22.12+ sets exclusive on it for reusePort.
    this[kExclusive] = isObject ? o : null;
    this[kPipeMode] = (isObject && o.readableAll === true ? LISTEN_READABLE_ALL : 0) |
      (isObject && o.writableAll === true ? LISTEN_WRITABLE_ALL : 0);
    return origListen.apply(this, args);
  };

  const origListen2 = net.Server.prototype._listen2;
  net.Server.prototype._listen2 = function _listen2(address, port, addressType, backlog, fd, flags) {
    if (this._handle || (typeof fd === 'number' && fd >= 0) || (this[kExclusive] && this[kExclusive].exclusive) || !connected) {
      return origListen2.apply(this, arguments);
    }
    const server = this;
    const args = arguments;
    const isPipe = port < 0 && typeof address === 'string';
    const resolved = isPipe ? path.resolve(address) : address;
    const indexesKey = [resolved, port, addressType, fd].join(':');
    let indexSet = indexes.get(indexesKey);
    if (indexSet === undefined) {
      indexSet = { nextIndex: 0, set: new Set() };
      indexes.set(indexesKey, indexSet);
    }
    const index = indexSet.nextIndex++;
    indexSet.set.add(index);
    const host = resolved === null || resolved === undefined ? '' : String(resolved);
    const wire = isPipe ? `unix:${host}` : host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    const req = nextReq++;
    pending.set(req, (ev) => {
      if (ev.kind === EV.LISTEN_ERR) {
        indexSet.set.delete(index);
        const errno = ev.errno > 0 ? -ev.errno : os.constants.errno.EINVAL ? -os.constants.errno.EINVAL : -22;
        const code = ev.errno > 0 ? util.getSystemErrorName(-ev.errno) : ev.syscall === 'getaddrinfo' ? 'ENOTFOUND' : 'EINVAL';
        const ex = new Error(`bind ${code} ${port > 0 ? `${address}:${port}` : address}`);
        ex.errno = errno;
        ex.code = code;
        ex.syscall = 'bind';
        ex.address = address;
        if (port > 0) ex.port = port;
        server.emit('error', ex);
        return;
      }
      const lid = ev.listener;
      const sockname = isPipe ? undefined : { address: ev.address, family: ev.family === 6 ? 'IPv6' : 'IPv4', port: ev.port };
      const unlisten = () => {
        if (!servers.has(lid)) return;
        servers.delete(lid);
        handles.delete(handle);
        indexSet.set.delete(index);
        if (connected) {
          try {
            nw.unlisten(lid);
          } catch {
            // The channel just closed: nothing to stop.
          }
        }
      };
      let handle;
      if (ev.fds.length) {
        // shared: a real listening socket; libuv accepts on it.
        handle = new (handleClass(isPipe))(HANDLE_TYPE.SERVER);
        const err = handle.open(ev.fds[0]);
        if (err) {
          fs.closeSync(ev.fds[0]);
          server.emit('error', util._errnoException ? util._errnoException(err, 'open') : new Error(`open ${err}`));
          return;
        }
        const close = handle.close;
        handle.close = function () {
          unlisten();
          return close.apply(handle, arguments);
        };
      } else {
        // round-robin: a stand-in handle; connections come from the primary.
        let refTimer = null;
        handle = {
          listen: () => 0,
          ref() {
            if (!refTimer) refTimer = setInterval(() => {}, 2 ** 30);
          },
          unref() {
            if (refTimer) clearInterval(refTimer);
            refTimer = null;
          },
          close(cb) {
            this.unref();
            unlisten();
            if (typeof cb === 'function') process.nextTick(cb);
          },
        };
        if (sockname) handle.getsockname = (out) => Object.assign(out, sockname) && 0;
        handle.ref();
        handle.isPipe = isPipe;
      }
      servers.set(lid, handle);
      handles.add(handle);
      listeningServers.add(server);
      server.once('close', () => listeningServers.delete(server));
      server._handle = handle;
      server.once('listening', () => {
        worker.state = 'listening';
        const a = server.address();
        sendInternal({
          act: 'listening',
          // Pipes: the absolute path, as node:cluster's worker resolves it before asking.
          address: resolved === undefined ? null : resolved,
          port: (a && a.port) || port,
          addressType,
          fd,
          index,
        });
      });
      origListen2.apply(server, args);
    });
    // As node:cluster, the options are not part of the key: the first listen binds with its own.
    const options = (flags & UV_TCP_IPV6ONLY ? LISTEN_IPV6_ONLY : 0) | (isPipe ? server[kPipeMode] : 0);
    try {
      nw.listen(req, wire, backlog || 511, index, options);
    } catch (e) {
      pending.delete(req);
      process.nextTick(() => server.emit('error', nativeError(e)));
    }
  };

  function onConnection(ev) {
    const handle = servers.get(ev.listener);
    const fd = ev.fds[0];
    if (!handle || typeof handle.onconnection !== 'function') {
      fs.closeSync(fd);
      return;
    }
    const client = new (handleClass(handle.isPipe))(HANDLE_TYPE.SOCKET);
    const err = client.open(fd);
    if (err) {
      fs.closeSync(fd);
      return;
    }
    handle.onconnection(0, client);
  }

  function onEvents(events) {
    for (const ev of events) {
      switch (ev.kind) {
        case EV.CONNECTION:
          onConnection(ev);
          break;
        case EV.LISTEN_OK:
        case EV.LISTEN_ERR: {
          const cb = pending.get(ev.id);
          pending.delete(ev.id);
          // After a disconnect the answer is dropped, as node:cluster's never arrives.
          if (cb && connected) cb(ev);
          else for (const fd of ev.fds) fs.closeSync(fd);
          break;
        }
        case EV.MESSAGE:
          deliver(process, ev.data, ev.fds);
          break;
        case EV.DISCONNECT_REQUEST:
          workerDisconnect.call(worker, true);
          break;
        case EV.FLUSHED:
          sendCallbacks.written(nw.written());
          break;
        case EV.ERROR: {
          // Out of fds (EMFILE: a connection or handle from the primary was lost) or a broken
          // channel. On process, as node:cluster's channel errors are: cluster.worker sees it,
          // and with no listener it is thrown (the worker exits 1 naming the errno) instead of
          // the worker going away with 0 as if the primary had left.
          const err = new Error(ev.message);
          err.code = ev.syscall || 'ERR_CORRAL_PROTOCOL';
          if (ev.errno) {
            err.errno = -ev.errno;
            err.syscall = 'recvmsg';
          }
          process.nextTick(() => process.emit('error', err));
          break;
        }
        case EV.PRIMARY_GONE:
          sendCallbacks.fail();
          if (!closing && connected) {
            connected = false;
            process.channel = null;
            keepAlive.set(false);
            process.emit('disconnect');
          }
          break;
        default:
          break;
      }
    }
  }

  // Extra beyond node:cluster: tell the primary this worker has warmed up.
  // After the disconnect it throws what a send reports in node:cluster.
  Worker.prototype.ready = function ready() {
    if (!connected) {
      const ex = new Error('Channel closed');
      ex.code = 'ERR_IPC_CHANNEL_CLOSED';
      throw ex;
    }
    nw.ready();
  };
}
