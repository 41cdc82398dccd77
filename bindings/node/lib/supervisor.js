'use strict';
// cluster.supervise() (corral's, beyond node:cluster): its options, checked here for shape and
// by the engine for range (corral-core's limits, the same for C), and the Supervisor object
// (reload, scale, shutdown, metrics) on top of the engine's supervisor.

const EventEmitter = require('events');
const os = require('os');
const util = require('util');
const { codedError, nativeError } = require('./errors');
const { addon, callNative } = require('./native');

// `option`: the option's name as the user wrote it (restart.factor), for code that handles it.
function invalidOption(name, why) {
  return codedError(TypeError, 'ERR_CORRAL_INVALID_OPTION', `supervise(): ${name} ${why}`, { option: name });
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
  if (workers === 'auto') workers = addon.availableParallelism();
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

class Supervisor extends EventEmitter {
  // `primary`: { cluster, live (id -> Worker until its exit), refreshKeepAlive } of primary.js.
  constructor(eng, o, primary) {
    super();
    this._engine = eng;
    this._primary = primary;
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

  // A snapshot: { workers: [{slot, id, pid, state, handedOff, refused, inflight, active, restarts,
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
    const { cluster, live } = this._primary;
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
    this._primary.refreshKeepAlive();
    for (const resolve of this._shutdowns.splice(0)) resolve(this._shutdownDone);
  }
}

module.exports = { Supervisor, invalidOption, validateSupervise };
