'use strict';
// Small pieces the primary and worker sides share.

const net = require('net');
const os = require('os');
const { codedError } = require('./errors');

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

const signalNames = Object.create(null);
for (const [name, num] of Object.entries(os.constants.signals)) signalNames[num] = name;

function signalNumber(signal) {
  if (signal === undefined || signal === null) return os.constants.signals.SIGTERM;
  if (typeof signal === 'number') return signal;
  const n = os.constants.signals[signal];
  if (n === undefined) throw codedError(TypeError, 'ERR_UNKNOWN_SIGNAL', `Unknown signal: ${signal}`);
  return n;
}

// The libuv handle classes net wraps (tcp_wrap's TCP, pipe_wrap's Pipe), taken from a socket net
// creates itself: process.binding() is deprecated (DEP0111), a warning under
// --pending-deprecation and an exception under --throw-deprecation. connect() creates the handle
// at once; the TCP connection would start on a later tick and the pipe one fails (ENOTDIR, a path
// under /dev/null cannot exist), and destroy() closes the handle first. Looked up on first use.
// The constructor's argument is the handle type of tcp_wrap.h and pipe_wrap.h (SOCKET 0, SERVER 1;
// test/deprecation.test.js checks both against the bindings on every tested Node).
const HANDLE_TYPE = { SOCKET: 0, SERVER: 1 };
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

module.exports = { KeepAlive, signalNames, signalNumber, HANDLE_TYPE, handleClass };
