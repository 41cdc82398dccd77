'use strict';
// Shared by the corral-only test files (supervise, lifecycle): is the addon loadable, and
// running a script in its own process group that is killed when the test ends.
const assert = require('node:assert');
const { spawn, spawnSync } = require('node:child_process');
const path = require('node:path');

const MODULE = path.resolve(__dirname, '..', 'index.js');

const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(MODULE)})`], { encoding: 'utf8' });
const missing = load.status === 0 ? null : load.stderr.split('\n').find((l) => l.includes('Error')) || 'load failed';

// True when the test may go on; skips it visibly (or fails it, when the addon is required).
function addonOrSkip(t) {
  if (!missing) return true;
  if (process.env.CORRAL_COMPAT_REQUIRE_ADDON === '1') assert.fail(`corral addon not built: ${missing}`);
  t.skip(`corral addon not built: ${missing}`);
  return false;
}

// Runs `node args` with CORRAL_MODULE set; resolves {code, lines, err}; bounded by `timeout`.
function runNode(t, args, { env = {}, cwd, timeout = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, CORRAL_MODULE: MODULE, ...env },
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    t.after(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => reject(new Error(`node ${args.join(' ')} did not exit within ${timeout} ms:\n${out}\n${err}`)), timeout);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, lines: out.trim().split('\n'), err });
    });
  });
}

module.exports = { MODULE, addonOrSkip, runNode };
