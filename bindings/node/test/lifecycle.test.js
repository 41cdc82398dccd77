'use strict';
// Process and environment lifecycle of the Node front: worker_threads, a cluster that ends by
// itself, silent workers, the ESM entry, and `npm pack` installed into an unrelated directory.
const { test } = require('node:test');
const assert = require('node:assert');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const PKG = path.resolve(__dirname, '..');
const MODULE = path.join(PKG, 'index.js');
const DIR = path.join(__dirname, 'lifecycle');

const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(MODULE)})`], { encoding: 'utf8' });
const missing = load.status === 0 ? null : (load.stderr.split('\n').find((l) => l.includes('Error')) || 'load failed');

function guarded(t) {
  if (!missing) return true;
  if (process.env.CORRAL_COMPAT_REQUIRE_ADDON === '1') assert.fail(`corral addon not built: ${missing}`);
  t.skip(`corral addon not built: ${missing}`);
  return false;
}

function run(t, args, opts = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      env: { ...process.env, CORRAL_MODULE: MODULE, ...opts.env },
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    t.after(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} did not exit within 15 s:\n${out}\n${err}`)), 15000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, lines: out.trim().split('\n'), err });
    });
  });
}

test('loading corral in a worker_thread and ending the thread neither hangs nor crashes', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'in-worker-thread.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, ['in thread: isPrimary=true', 'worker online', 'thread exit 0']);
});

test('a finished cluster lets the process exit', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'finished-cluster.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines.sort(), ['primary exits by itself', 'worker 1 exit 0', 'worker 2 exit 0']);
});

test('silent workers: stdout is piped to the primary', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'silent.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines.sort(), ['captured: hello from worker 1', 'exit 0']);
});

test('npm pack installs and works from an unrelated directory, CJS and ESM', async (t) => {
  if (!guarded(t)) return;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-pack-'));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const pack = spawnSync(npm, ['pack', '--silent', '--pack-destination', tmp], { cwd: PKG, encoding: 'utf8' });
  assert.strictEqual(pack.status, 0, pack.stderr);
  const tgz = path.join(tmp, pack.stdout.trim().split('\n').pop());
  const listing = spawnSync('tar', ['tzf', tgz], { encoding: 'utf8' }).stdout;
  for (const f of ['package/index.js', 'package/index.mjs', 'package/index.d.ts', 'package/corral.node', 'package/package.json']) {
    assert.ok(listing.includes(f), `${f} missing from the tarball:\n${listing}`);
  }
  const app = path.join(tmp, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), '{"name":"app","version":"1.0.0","private":true}');
  const inst = spawnSync(npm, ['install', '--silent', '--no-audit', '--no-fund', '--offline', tgz], { cwd: app, encoding: 'utf8' });
  assert.strictEqual(inst.status, 0, inst.stderr);
  fs.copyFileSync(path.join(DIR, 'esm.mjs'), path.join(app, 'esm.mjs'));
  fs.writeFileSync(
    path.join(app, 'cjs.js'),
    "const cluster = require('corral');\n" +
      "if (cluster.isPrimary) { const w = cluster.fork(); w.on('message', (m) => { console.log('cjs: ' + m); w.kill(); }); }\n" +
      "else process.send('hello');\n",
  );
  const env = { CORRAL_MODULE: '', NODE_PATH: '' };
  const cjs = await run(t, ['cjs.js'], { cwd: app, env });
  assert.strictEqual(cjs.code, 0, cjs.err);
  assert.deepStrictEqual(cjs.lines, ['cjs: hello']);
  const esm = await run(t, ['esm.mjs'], { cwd: app, env });
  assert.strictEqual(esm.code, 0, esm.err);
  assert.deepStrictEqual(esm.lines, ['esm: hello default=true']);
});
