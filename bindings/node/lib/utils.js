'use strict';
// Small pieces the primary and worker sides share.

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

module.exports = { KeepAlive, signalNames, signalNumber };
