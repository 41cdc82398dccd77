'use strict';
// Shared by the test files: is the addon loadable, the environment of a child, and running a
// script in its own process group that is killed when the test ends.
const assert = require('node:assert');
const { spawn, spawnSync } = require('node:child_process');
const path = require('node:path');

const MODULE = path.resolve(__dirname, '..', 'index.js');

// True when the test may go on; skips it visibly (or fails it, when the addon is required or
// loading it crashes).
function addonOrSkip(t) {
  const probe = probeCorral();
  if (probe.ok) return true;
  if (probe.broken) assert.fail(probe.broken);
  if (process.env.CORRAL_COMPAT_REQUIRE_ADDON === '1') assert.fail(`corral addon not built: ${probe.reason}`);
  t.skip(`corral addon not built: ${probe.reason}`);
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

// The environment for a child: without the variables that would make it believe it is a test
// file (NODE_TEST_CONTEXT) or a cluster worker (NODE_UNIQUE_ID, NODE_CHANNEL_*), without
// NODE_OPTIONS and the scheduling policy (they change what node:cluster prints), without
// `drop`, plus `extra`.
function childEnv(extra = {}, drop = []) {
  const env = { ...process.env };
  for (const key of ['NODE_TEST_CONTEXT', 'NODE_UNIQUE_ID', 'NODE_CHANNEL_FD', 'NODE_CHANNEL_SERIALIZATION_MODE',
    'NODE_CLUSTER_SCHED_POLICY', 'NODE_OPTIONS', 'CORRAL_NODE_RECV', ...drop]) {
    delete env[key];
  }
  return { ...env, ...extra };
}

// Whether `require('<bindings/node/index.js>')` succeeds in a fresh process: { ok } or
// { ok: false, reason } when it throws (corral runs are then skipped with that reason), or
// { ok: false, broken } when the probe crashes or hangs (corral runs then fail).
let corralProbe;
function probeCorral() {
  if (corralProbe) return corralProbe;
  // Only the message: Node's "Require stack:" tail names the probe, not the problem. The explicit
  // exit keeps a handle opened at load time from hanging the probe.
  const code = 'try { require(process.argv[1]); } catch (e) { ' +
    'const m = String(e && e.message !== undefined ? e.message : e); ' +
    'process.stderr.write(m.split(/\\nRequire stack:/)[0]); process.exit(1); } process.exit(0);';
  const r = spawnSync(process.execPath, ['-e', code, MODULE], {
    env: childEnv(),
    encoding: 'utf8',
    timeout: 20_000,
    killSignal: 'SIGKILL',
  });
  const shorten = (text) => (text.length > 600 ? `${text.slice(0, 600)}...` : text);
  if (r.status === 0) {
    corralProbe = { ok: true };
  } else if (r.status === 1) {
    const lines = r.stderr.trim().split('\n').map((l) => l.trim()).filter(Boolean);
    corralProbe = { ok: false, reason: shorten(lines.join('; ') || 'require() threw') };
  } else {
    const how = r.error ? r.error.message : r.signal ? `killed by ${r.signal}` : `exit code ${r.status}`;
    corralProbe = { ok: false, broken: shorten(`require(${MODULE}) in a fresh node: ${how}; stderr: ${r.stderr}`) };
  }
  return corralProbe;
}

// Runs `node script args` as its own process group, so that the group (the primary and every
// worker) can be killed, and the primary reaped, when the test ends, whatever happened; the
// group is also killed after `timeoutMs`. Resolves {exit, stdout, stderr, timedOut, spawnError,
// ms} once the child's stdio closed. `execArgv`: node's own options, before the script.
function runGroup(t, script, args, { cwd, env, timeoutMs, execArgv = [] }) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [...execArgv, script, ...args], {
      cwd,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const reaped = new Promise((r) => child.once('exit', r));
    const killGroup = () => {
      try { process.kill(-child.pid, 'SIGKILL'); } catch {} // ESRCH: already gone
    };
    t.after(async () => {
      killGroup();
      if (child.exitCode === null && child.signalCode === null) await reaped;
    });

    let stdout = '';
    let stderr = '';
    let exit = null;
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    child.on('exit', (code, signal) => { exit = { code, signal }; });
    const timer = setTimeout(() => { timedOut = true; killGroup(); }, timeoutMs);
    const done = (spawnError) => {
      clearTimeout(timer);
      resolve({ exit, stdout, stderr, timedOut, spawnError, ms: Date.now() - started });
    };
    child.on('error', done);
    child.on('close', () => done(null));
  });
}

module.exports = { MODULE, addonOrSkip, runNode, runGroup, childEnv, probeCorral };
