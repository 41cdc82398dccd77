'use strict';
// The primary side of require('corral'), as lib/internal/cluster/primary.js: cluster.fork(),
// setupPrimary(), disconnect(), the Worker objects and node:cluster's event order, on top of
// the native engine. The engine (listeners, connection handoff, exits, supervision) runs on its
// own thread; its events and the workers' messages arrive here in batches (onBatch).

const EventEmitter = require('events');
const fs = require('fs');
const net = require('net');
const { ChildProcess } = require('child_process');
const url = require('url');
const util = require('util');
const Worker = require('./worker');
const { channelClosed, codedError, ipcDisconnected, nativeError, systemError } = require('./errors');
const { SendCallbacks, makeSend, deliver, deliverBatch, newTurn } = require('./messages');
const { KeepAlive, signalNames, signalNumber } = require('./utils');
const { Supervisor, invalidOption, validateSupervise } = require('./supervisor');
const {
  addon, callNative, decodeBatch, EV, ENV_HEARTBEAT, ENV_SERIALIZATION, SCHED_NONE, SCHED_RR,
  SCHED_KERNEL_RR,
  SCHED_STICKY, SCHED_LEAST, SCHED_KERNEL_LEAST, ENV_REPORT_CLOSES,
} = require('./native');

const cluster = new EventEmitter();
module.exports = cluster;
cluster.isWorker = false;
cluster.isMaster = true;
cluster.isPrimary = true;
cluster.Worker = Worker;
cluster.SCHED_NONE = SCHED_NONE;
cluster.SCHED_RR = SCHED_RR;
cluster.SCHED_KERNEL_RR = SCHED_KERNEL_RR;
cluster.SCHED_STICKY = SCHED_STICKY;
cluster.SCHED_LEAST = SCHED_LEAST;
cluster.SCHED_KERNEL_LEAST = SCHED_KERNEL_LEAST;

let policy = { none: SCHED_NONE, rr: SCHED_RR }[process.env.NODE_CLUSTER_SCHED_POLICY];
const corralPolicy = {
  shared: SCHED_NONE, none: SCHED_NONE, rr: SCHED_RR, 'kernel-rr': SCHED_KERNEL_RR,
  sticky: SCHED_STICKY, least: SCHED_LEAST, 'least-p2c': 'least-p2c',
  'kernel-least': SCHED_KERNEL_LEAST,
}[process.env.CORRAL_SCHED_POLICY];
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
  const name = policyName(cluster.schedulingPolicy) || 'rr';
  const routing = routingOf(cluster.settings);
  engine = callNative(() => new addon.NativePrimary(name, undefined, onBatch, routing));
  return engine;
}

// setupPrimary({ sticky: { cookie | query | header: name, prefix: { v4, v6 } }, proxyProtocol })
// -> the engine's RoutingArgs; a wrong type or value throws, naming the option.
function routingOf(settings) {
  const { sticky, proxyProtocol } = settings;
  const out = {};
  if (proxyProtocol !== undefined) {
    if (typeof proxyProtocol !== 'boolean') throw invalidArg('options.proxyProtocol', 'of type boolean', proxyProtocol);
    out.proxyProtocol = proxyProtocol;
  }
  if (sticky === undefined) return out;
  if (sticky === null || typeof sticky !== 'object') throw invalidArg('options.sticky', 'of type object', sticky);
  const keys = ['cookie', 'query', 'header'].filter((k) => sticky[k] !== undefined);
  if (keys.length > 1) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE',
      `The property 'options.sticky' must name one of cookie, query or header. Received ${keys.join(' and ')}`);
  }
  for (const k of keys) {
    const v = sticky[k];
    if (typeof v !== 'string' || v === '' || v.length > 256 || /[\s;,=&#?"()<>@:\\/[\]{}]/.test(v)) {
      throw invalidArg(`options.sticky.${k}`, 'a name of 1 to 256 token characters', v);
    }
    out.keyKind = k;
    out.keyName = v;
  }
  const unknown = Object.keys(sticky).filter((k) => !['cookie', 'query', 'header', 'prefix'].includes(k));
  if (unknown.length) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The property 'options.sticky' has unknown key ${unknown[0]}`);
  }
  const { prefix } = sticky;
  if (prefix !== undefined) {
    if (prefix === null || typeof prefix !== 'object') throw invalidArg('options.sticky.prefix', 'an object { v4, v6 }', prefix);
    for (const [k, max] of [['v4', 32], ['v6', 128]]) {
      const v = prefix[k];
      if (v === undefined) continue;
      if (!Number.isInteger(v) || v < 0 || v > max) throw invalidArg(`options.sticky.prefix.${k}`, `an integer from 0 to ${max}`, v);
      out[`${k}Prefix`] = v;
    }
  }
  return out;
}

function invalidArg(name, what, value) {
  let shown = util.inspect(value);
  if (shown.length > 128) shown = `${shown.slice(0, 128)}...`;
  const type = name.includes('.') ? 'property' : 'argument';
  return codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The ${type} '${name}' must be ${what}. Received ${shown}`);
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
  routingOf(settings); // throws on a bad sticky / proxyProtocol, before anything changes
  cluster.settings = settings;
  if (initialized === true) return process.nextTick(setupSettingsNT, settings);
  initialized = true;
  if (policyName(cluster.schedulingPolicy) === undefined) {
    throw new Error(`Bad cluster.schedulingPolicy: ${cluster.schedulingPolicy}`);
  }
  process.nextTick(setupSettingsNT, settings);
};
cluster.setupMaster = cluster.setupPrimary;

// The engine's name of a cluster.schedulingPolicy value: node:cluster's constants, corral's
// cluster.SCHED_KERNEL_RR, SCHED_STICKY, SCHED_LEAST and SCHED_KERNEL_LEAST, or the engine's
// names themselves ('kernel-rr', 'sticky', 'least', 'least-p2c', 'kernel-least').
function policyName(p) {
  if (p === SCHED_NONE || p === 'shared' || p === 'none') return 'shared';
  if (p === SCHED_RR || p === 'rr') return 'rr';
  if (p === SCHED_KERNEL_RR || p === 'kernel-rr') return 'kernel-rr';
  if (p === SCHED_STICKY || p === 'sticky') return 'sticky';
  if (p === SCHED_LEAST || p === 'least') return 'least';
  if (p === 'least-p2c') return 'least-p2c';
  if (p === SCHED_KERNEL_LEAST || p === 'kernel-least') return 'kernel-least';
  return undefined;
}

function setupSettingsNT(settings) {
  cluster.emit('setup', settings);
}

// settings.stdio (or silent) as child_process.fork() takes it: a string ('pipe', 'ignore',
// 'inherit', 'overlapped') means three of it plus 'ipc'; an array needs exactly one 'ipc'
// and may be longer than 3, entry i being the worker's fd i. Returns the native setup of each
// fd, and the streams whose fds the worker gets (paused once it started, as Node does).
// The 'ipc' entry's fd is the worker's channel, as Node's is its IPC channel (process.channel.fd
// names it in both); corral's second channel (messages) goes above the last entry.
function stdioOf(settings) {
  let stdio = settings.stdio;
  if (typeof stdio === 'string') stdio = stdioStringToArray(stdio);
  else if (!Array.isArray(stdio)) stdio = stdioStringToArray(settings.silent ? 'pipe' : 'inherit');
  else if (!stdio.includes('ipc')) {
    throw codedError(Error, 'ERR_CHILD_PROCESS_IPC_REQUIRED', "Forked processes must have an IPC channel, missing value 'ipc' in options.stdio");
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
      if (ipc) throw codedError(Error, 'ERR_IPC_ONE_PIPE', 'Child process can have only one IPC pipe');
      ipc = true;
      return 'channel';
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
      throw codedError(TypeError, 'ERR_INVALID_SYNC_FORK_INPUT',
        `Asynchronous forks do not support Buffer, TypedArray, DataView or string input: ${util.inspect(s)}`);
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
  return codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The argument 'stdio' is invalid. Received ${shown}`);
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
  return codedError(RangeError, 'ERR_SOCKET_BAD_PORT', `Port should be >= 0 and < 65536. Received ${shown}.`);
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

// What child_process.fork() checks and how it reads its options, since node:cluster's fork()
// goes through it (lib/child_process.js fork and normalizeSpawnArguments), with its errors: a
// null byte in execArgv, an argument, cwd, a variable's name or value throws
// ERR_INVALID_ARG_VALUE (the OS would refuse them); cwd is a string, a Buffer or a file: URL;
// a variable whose value is undefined is left out (so { PORT: config.port } sets no PORT when
// the port is not configured), any other value is `${value}`.
function checkNullBytes(name, value) {
  if (typeof value === 'string' && value.includes('\u0000')) throw invalidArg(name, 'a string without null bytes', value);
}
function spawnCwd(cwd) {
  if (cwd === undefined || cwd === null) return undefined;
  if (cwd instanceof URL) cwd = url.fileURLToPath(cwd);
  if (typeof cwd !== 'string' && !(cwd instanceof Uint8Array)) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
      `The "options.cwd" property must be of type string or an instance of Buffer or URL.${received(cwd)}`);
  }
  if (typeof cwd === 'string' ? cwd.includes('\u0000') : cwd.includes(0)) {
    throw invalidArg('options.cwd', 'a string, Uint8Array, or URL without null bytes', cwd);
  }
  // A Buffer passes the checks, but Node's spawn reads cwd only when it is a string: the
  // worker starts in the primary's cwd (checked on Node 20).
  return typeof cwd === 'string' ? cwd : undefined;
}
// The end of Node's ERR_INVALID_ARG_TYPE message.
function received(value) {
  if (value === null || value === undefined) return ` Received ${value}`;
  if (typeof value === 'function' && value.name) return ` Received function ${value.name}`;
  if (typeof value === 'object') {
    if (value.constructor && value.constructor.name) return ` Received an instance of ${value.constructor.name}`;
    return ` Received ${util.inspect(value, { depth: -1 })}`;
  }
  let shown = util.inspect(value, { colors: false });
  if (shown.length > 25) shown = `${shown.slice(0, 25)}...`;
  return ` Received type ${typeof value} (${shown})`;
}

function spawnOptions(env) {
  const s = cluster.settings;
  (s.execArgv || []).forEach((a, i) => checkNullBytes(`options.execArgv[${i}]`, a));
  const workerEnv = {};
  // node:cluster forks with { ...process.env, ...env }, and child_process leaves out a variable
  // whose value is undefined: so does the engine, also one the primary's environment has.
  const envRemove = [];
  for (const [k, v] of Object.entries({ ...env })) {
    if (v === undefined) {
      if (k in process.env) envRemove.push(k);
      continue;
    }
    checkNullBytes(`options.env['${k}']`, k);
    checkNullBytes(`options.env['${k}']`, v);
    workerEnv[k] = `${v}`;
  }
  if (s.serialization === 'advanced') workerEnv[ENV_SERIALIZATION] = 'advanced';
  // least counts closes in the primary; so does kernel-least where it falls back to least.
  const p = getEngine().policy();
  if (p.startsWith('least') || p === 'kernel-least') workerEnv[ENV_REPORT_CLOSES] = '1';
  if (s.inspectPort === null) throw badPort(null);
  const execArgv = [...s.execArgv];
  if (isUsingInspector(s.execArgv)) execArgv.push(`--inspect-port=${getInspectPort(s.inspectPort)}`);
  const args = [...execArgv, s.exec, ...(s.args || [])];
  args.forEach((a, i) => checkNullBytes(`args[${i}]`, a));
  const cwd = spawnCwd(s.cwd);
  const stdio = stdioOf(s);
  return {
    program: process.execPath,
    args: args.map(String),
    env: workerEnv,
    envRemove,
    cwd,
    stdio: stdio.entries,
    wraps: stdio.wraps, // not for the addon: paused once the worker started
    uid: s.uid,
    gid: s.gid,
  };
}

// Spawn failures Node's ChildProcess.spawn() reports with an 'error' event instead of a throw
// (lib/internal/child_process.js: "Run-time errors should emit an error, not throw").
const SPAWN_RUNTIME_ERRORS = new Set(['EACCES', 'EAGAIN', 'EMFILE', 'ENFILE', 'ENOENT']);

// Ids come from the engine (from 1, never reused), shared with workers the supervisor starts.
function createWorkerProcess(env) {
  const opts = spawnOptions(env);
  let spawned;
  try {
    spawned = callNative(() => getEngine().spawn(opts));
  } catch (e) {
    // As Node's spawn: an OS error reads "spawn EBADF" and carries errno, code, syscall.
    if (typeof e.errno !== 'number' || e.syscall !== undefined) throw e;
    if (!SPAWN_RUNTIME_ERRORS.has(e.code)) throw systemError('spawn', e.code);
    // A cwd that does not exist (ENOENT), one not searchable (EACCES), no processes or fds
    // left: fork() returns a worker whose process reports the error (below).
    const id = callNative(() => getEngine().skipWorkerId());
    return new SpawnFailedChildProcess(id, e.code, opts);
  }
  pauseWrapped(opts.wraps);
  return new PrimaryChildProcess(spawned, () => cluster.settings.serialization, opts.args);
}

// Whether the primary's event loop stays alive, as Node's handles decide it: each worker's
// process until it exits unless unref()'d (worker.process.unref()), its channel until the
// disconnect unless unref()'d (worker.process.channel.unref()), a running supervisor.
function refreshKeepAlive() {
  let on = supervisor !== null && !supervisor._shutdownDone;
  for (const w of live.values()) {
    const p = w.process;
    if (p._refed && p.exitCode === null && p.signalCode === null) on = true;
    if (p.channel && p._channelRefed) on = true;
  }
  keepAlive.set(on);
}

// worker.process.channel, as Node's Control (lib/internal/child_process.js): ref()/unref()
// decide whether the channel keeps the primary alive; fd is the primary's end. null from the
// disconnect on.
class Control extends EventEmitter {
  #proc;
  constructor(proc) {
    super();
    this.#proc = proc;
  }
  ref() {
    this.#proc._channelRefed = true;
    refreshKeepAlive();
  }
  unref() {
    this.#proc._channelRefed = false;
    refreshKeepAlive();
  }
  get fd() {
    return engine ? engine.channelFd(this.#proc.workerId) : -1;
  }
}

// What both kinds of worker process share: refs, the channel and its end. A ChildProcess to
// instanceof (its prototype's methods are all replaced here or in the subclasses, but spawn()),
// spawnfile and spawnargs as child_process.fork() sets them: [node, ...execArgv, exec, ...args].
class ChildProcessBase extends EventEmitter {
  constructor(id, args) {
    super();
    this.workerId = id;
    this.exitCode = null;
    this.signalCode = null;
    this.killed = false;
    this.connected = true;
    this.spawnfile = process.execPath;
    this.spawnargs = [process.execPath, ...args];
    this.channel = new Control(this);
    this._refed = true;
    this._channelRefed = true;
  }
  ref() {
    this._refed = true;
    refreshKeepAlive();
  }
  unref() {
    this._refed = false;
    refreshKeepAlive();
  }
  // The channel ended: as Node's, channel is null from here on, synchronously.
  _channelEnded() {
    this.connected = false;
    this.channel = null;
    refreshKeepAlive();
  }
}

Object.setPrototypeOf(ChildProcessBase.prototype, ChildProcess.prototype);

Object.defineProperty(ChildProcessBase.prototype, '_channel', {
  configurable: true,
  enumerable: false,
  get: util.deprecate(function () {
    return this.channel;
  }, '_channel is deprecated. Use ChildProcess.channel instead.', 'DEP0129'),
  set: util.deprecate(function (v) {
    this.channel = v;
  }, '_channel is deprecated. Use ChildProcess.channel instead.', 'DEP0129'),
});

class PrimaryChildProcess extends ChildProcessBase {
  constructor(spawned, serialization, args) {
    super(spawned.id, args);
    this.pid = spawned.pid;
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
    this.send = makeSend(this, (data, fds) => getEngine().send(this.workerId, data, fds), serialization, this._sendCallbacks,
      (batch) => getEngine().sendBatch(this.workerId, batch));
  }
  kill(signal) {
    const n = signalNumber(signal);
    if (this.exitCode !== null || this.signalCode !== null) return false;
    // Messages sent before the signal leave before it, as Node writes them at once.
    this._sendCallbacks.flush();
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
      this.emit('error', ipcDisconnected());
      return;
    }
    // child_process level, as Node's ChildProcess.disconnect(): the channel is cut now, not
    // the graceful cluster path (worker.disconnect()). The worker sees its channel end
    // without having said exitedAfterDisconnect, so it exits at once.
    this._sendCallbacks.flush();
    this._channelEnded();
    try {
      engine.cutOff(this.workerId);
    } catch {
      // Already gone: its exit event is on its way.
    }
    process.nextTick(() => this.emit('disconnect'));
  }
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

// The process of a worker whose spawn failed with a run-time error, as Node's ChildProcess is
// then: no pid, 'error' (errno, code, syscall "spawn <node>", path, spawnargs) on the next
// tick, exitCode set to the negative errno (so worker.isDead()), 'close', and 'disconnect'
// once the channel to the process that never ran reads its end. No 'exit': the worker leaves
// cluster.workers on its 'disconnect'. Its pipes ('pipe' entries) exist and are ended.
class SpawnFailedChildProcess extends ChildProcessBase {
  constructor(id, code, opts) {
    super(id, opts.args);
    this.pid = undefined;
    this.stdio = opts.stdio.map((entry, i) => {
      if (entry !== 'pipe') return null;
      const stream = new net.Socket({ readable: i > 0, writable: true });
      if (i === 0) stream.destroy();
      else stream.push(null);
      return stream;
    });
    [this.stdin, this.stdout, this.stderr] = this.stdio;
    this._sendCallbacks = new SendCallbacks();
    this.send = makeSend(this, () => {
      throw channelClosed();
    }, () => cluster.settings.serialization, this._sendCallbacks);
    process.nextTick(() => {
      const err = systemError(`spawn ${this.spawnfile}`, code);
      err.path = this.spawnfile;
      err.spawnargs = this.spawnargs.slice(1);
      this.exitCode = err.errno;
      refreshKeepAlive();
      this.emit('error', err);
      process.nextTick(() => {
        for (const stream of this.stdio) if (stream && stream.readable) stream.resume();
        this.emit('close', this.exitCode, this.signalCode);
        setImmediate(() => {
          live.delete(id);
          if (!this.connected) {
            refreshKeepAlive();
            return;
          }
          this._channelEnded();
          this.emit('disconnect');
        });
      });
    });
  }
  kill() {
    return false;
  }
  disconnect() {
    if (!this.connected) {
      this.emit('error', ipcDisconnected());
      return;
    }
    this._channelEnded();
    process.nextTick(() => this.emit('disconnect'));
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
  refreshKeepAlive();

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

// Listen key -> { data, workers }: what servers share through the primary (serverData below).
const serverData = new Map();
function forgetServerData(id) {
  for (const [key, entry] of serverData) {
    entry.workers.delete(id);
    if (entry.workers.size === 0) serverData.delete(key);
  }
}

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
  } else if (message.act === 'serverData') {
    // The first data for a listen key stays while a worker that asked for it lives (node:cluster
    // drops it with the key's last server; a later server of the key gets the same data here).
    let entry = serverData.get(message.key);
    if (entry === undefined) {
      entry = { data: message.data, workers: new Set() };
      serverData.set(message.key, entry);
    }
    entry.workers.add(worker.id);
    if (message.seq !== undefined && worker.process.connected) {
      worker.process.send({ cmd: 'NODE_CLUSTER', ack: message.seq, data: entry.data }, () => {});
    }
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
    // What was sent before leaves before the request to disconnect.
    this.process._sendCallbacks.flush();
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
// The arguments of the workers the supervisor starts (their process's spawnargs).
let supervisorArgs = [];

cluster.supervise = function supervise(options = {}) {
  if (supervisor) throw codedError(Error, 'ERR_CORRAL_WRONG_STATE', 'supervise() was already called');
  const o = validateSupervise(options);
  cluster.setupPrimary();
  const spawn = spawnOptions(o.heartbeatInterval ? { [ENV_HEARTBEAT]: String(o.heartbeatInterval) } : {});
  const eng = getEngine();
  try {
    // The engine checks every range (corral-core's limits, the same for C).
    eng.supervise(o.native, spawn);
  } catch (e) {
    // A refused option comes with its name and the reason (bindings/node/src/error.rs).
    const err = nativeError(e);
    throw err.code === 'ERR_CORRAL_INVALID_OPTION' && typeof err.option === 'string' ? invalidOption(err.option, err.reason) : err;
  }
  pauseWrapped(spawn.wraps);
  supervisorArgs = spawn.args;
  supervisor = new Supervisor(eng, o, { cluster, live, refreshKeepAlive });
  // Alive until the supervisor's shutdown completes (its workers start on the engine thread).
  refreshKeepAlive();
  return supervisor;
};


cluster.on('listening', () => supervisor && supervisor._checkScales());
cluster.on('exit', () => supervisor && supervisor._checkScales());

// Engine events (from its thread) and worker messages (read on this thread from each
// worker's message channel, bindings/node/src/messages.rs) arrive here.
function onBatch(b) {
  newTurn();
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
        const p = new PrimaryChildProcess({ id: ev.worker, pid: ev.pid, stdio }, () => cluster.settings.serialization,
          supervisorArgs);
        adopt(ev.worker, p);
        break;
      }
      case EV.SUPERVISOR:
        // The event as an object (bindings/node/src/supervise.rs, JsSupervisorEvent).
        if (supervisor) supervisor._event(ev.message);
        break;
      case EV.SHUTDOWN_COMPLETE:
        if (supervisor) supervisor._shutdownComplete(ev.flag);
        break;
      case EV.WARNING: {
        // Not an error (the cluster runs: e.g. kernel-rr without CAP_BPF runs rr for that
        // address): a process warning, as Node reports what works but not as asked. It is
        // printed on stderr unless --no-warnings, and process.on('warning') sees its code.
        const w = new Error(ev.message);
        w.name = 'CorralWarning';
        w.code = ev.syscall;
        w.errno = ev.errno;
        if (ev.id) w.listener = ev.id;
        process.emitWarning(w);
        break;
      }
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
        if (ev.flag) deliverBatch(worker.process, ev.data, () => worker.process.connected);
        else deliver(worker.process, ev.data, ev.fds);
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
        worker.process._channelEnded();
        worker.process.emit('disconnect');
        break;
      case EV.EXIT: {
        if (!worker) break;
        const p = worker.process;
        if (p.connected) {
          // The engine reports the channel's end before the exit; keep Node's pairing.
          p._channelEnded();
          p.emit('disconnect');
        }
        p._sendCallbacks.fail();
        p.exitCode = ev.code === null || ev.code === undefined ? null : ev.code;
        p.signalCode = ev.signal ? signalNames[ev.signal] || null : null;
        live.delete(ev.worker);
        forgetServerData(ev.worker);
        refreshKeepAlive();
        p.emit('exit', p.exitCode, p.signalCode);
        process.nextTick(() => p._exited());
        break;
      }
      case EV.ERROR: {
        const err = codedError(Error, ev.syscall || 'ERR_CORRAL_PROTOCOL', ev.message);
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
