'use strict';
// cluster.supervise(): corral's supervisor through the Node front, with real workers.
const { test } = require('node:test');
const assert = require('node:assert');
const { spawn, spawnSync } = require('node:child_process');
const path = require('node:path');

const MODULE = path.resolve(__dirname, '..', 'index.js');
const APP = path.join(__dirname, 'supervise', 'app.js');

const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(MODULE)})`], { encoding: 'utf8' });
const missing = load.status === 0 ? null : (load.stderr.split('\n').find((l) => l.includes('Error')) || 'load failed');

function run(t, scenario) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [APP, scenario], {
      env: { ...process.env, CORRAL_MODULE: MODULE },
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
    const timer = setTimeout(() => reject(new Error(`${scenario} timed out:\n${out}\n${err}`)), 30000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, lines: out.trim().split('\n'), err });
    });
  });
}

function scenario(name, check) {
  test(name, async (t) => {
    if (missing) {
      if (process.env.CORRAL_COMPAT_REQUIRE_ADDON === '1') assert.fail(`corral addon not built: ${missing}`);
      t.skip(`corral addon not built: ${missing}`);
      return;
    }
    const r = await run(t, name);
    check(r);
  });
}

scenario('reload', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.match(lines[0], /^reload ok=true replaced=2 workers 1,2 -> 3,4$/);
  assert.strictEqual(lines[1], 'load ran=true failed=0');
  assert.strictEqual(lines[2], 'second reload ok=true');
  assert.strictEqual(lines[3], 'shutdown clean=true');
});

scenario('rollback', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, [
    'reload ok=false replaced=0 reason=true',
    'old workers serve=true same=true',
    'shutdown clean=true',
  ]);
});

scenario('crashloop', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.strictEqual(lines[0], 'crashloop slot=0 exits=3,3,3');
  // Boot failures (exit before listening), growing delays.
  assert.strictEqual(lines[1], 'restarts boot:50 boot:100');
  assert.strictEqual(lines[2], 'shutdown clean=true');
});

scenario('norestart', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, ['norestart code=78 restarts=0', 'shutdown clean=true']);
});

scenario('hang', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, ['hang slot=0 silentFor>=400=true detected<3s=true', 'restart cause=hang', 'shutdown clean=true']);
});

scenario('metrics', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, [
    'metrics workers=2 states=ready,ready rss>0=true',
    'prometheus parses=true has_info=true',
    'shutdown clean=true',
  ]);
});

scenario('sigterm', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, ['slow request finished: done', 'primary exit 0']);
});

scenario('invalid', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, [
    'ERR_CORRAL_INVALID_OPTION: supervise(): workers must be "auto" or an integer >= 1 (got 0)',
    'ERR_CORRAL_INVALID_OPTION: supervise(): restart.bogus is not a known option',
    'ERR_CORRAL_INVALID_OPTION: supervise(): restart.initialDelay must be a number >= 0 (got -5)',
    'ERR_CORRAL_INVALID_OPTION: supervise(): reload.batch must be an integer >= 1 (got 0)',
    'ERR_CORRAL_INVALID_OPTION: supervise(): heartbeat.timeout must be greater than heartbeat.interval',
  ]);
});
