'use strict';
// The npm packages, the napi-rs way: `corral` (JavaScript) plus one package per target
// (npm/<target>/: corral.<target>.node, with `os`, `cpu`, `libc`) as its optionalDependencies,
// and lib/loader.js choosing among them. Packed with scripts/pack.js, installed offline into an
// empty project, run there; and the error a platform without an addon gets.
const { test } = require('node:test');
const assert = require('node:assert');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { runNode: run } = require('./helpers');
const loader = require('../lib/loader');

const PKG = path.resolve(__dirname, '..');
const DIR = path.join(__dirname, 'npm');
const npm = process.env.NPM || 'npm';
const main = require('../package.json');
const HOST = loader.targetOf(loader.hostPlatform());

// The environment of an installed app: nothing pointing back at this clone.
const APP_ENV = { CORRAL_MODULE: undefined, NODE_PATH: undefined, CORRAL_NATIVE_PATH: undefined, NODE_OPTIONS: undefined };

function sh(cmd, args, opts) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 600_000, killSignal: 'SIGKILL', ...opts });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return r;
}

test('npm/<target>/package.json, optionalDependencies and the loader list the same targets, at one version', () => {
  const dirs = fs.readdirSync(path.join(PKG, 'npm')).filter((d) => fs.existsSync(path.join(PKG, 'npm', d, 'package.json'))).sort();
  assert.deepStrictEqual(dirs, [...loader.TARGETS].sort());
  assert.deepStrictEqual(
    main.optionalDependencies,
    Object.fromEntries(loader.TARGETS.map((t) => [loader.packageOf(t), main.version])),
  );
  assert.ok(!main.files.some((f) => f.endsWith('.node')), `the main package's files list an addon: ${main.files}`);
  for (const target of loader.TARGETS) {
    const p = JSON.parse(fs.readFileSync(path.join(PKG, 'npm', target, 'package.json'), 'utf8'));
    const [platform, arch, abi] = target.split('-');
    const file = loader.addonFile(target);
    assert.deepStrictEqual(
      { name: p.name, version: p.version, main: p.main, files: p.files, os: p.os, cpu: p.cpu, libc: p.libc, engines: p.engines, license: p.license },
      {
        name: `corral-${target}`, version: main.version, main: file, files: [file], os: [platform], cpu: [arch],
        libc: [abi === 'musl' ? 'musl' : 'glibc'], engines: main.engines, license: main.license,
      },
      `npm/${target}/package.json`,
    );
  }
});

test('the host is detected as napi-rs does: glibc exactly when the process report has glibcVersionRuntime', () => {
  const host = loader.hostPlatform();
  assert.strictEqual(host.platform, process.platform);
  assert.strictEqual(host.arch, process.arch);
  const { header } = process.report.getReport();
  assert.strictEqual(host.libc, header.glibcVersionRuntime ? 'glibc' : 'musl');
  assert.strictEqual(loader.targetOf({ platform: 'linux', arch: 'arm64', libc: 'musl' }), 'linux-arm64-musl');
  assert.strictEqual(loader.targetOf({ platform: 'linux', arch: 'x64', libc: 'glibc' }), 'linux-x64-gnu');
  assert.strictEqual(loader.targetOf({ platform: 'darwin', arch: 'arm64', libc: null }), 'darwin-arm64');
});

test('an unsupported platform gets ERR_CORRAL_NATIVE_NOT_FOUND naming it, the supported targets and what was tried', () => {
  const host = { platform: 'linux', arch: 'riscv64', libc: 'glibc' };
  const err = captured(() => loader.loadNative({ host, env: { CORRAL_NATIVE_PATH: '/nonexistent/x.node' } }));
  assert.strictEqual(err.code, 'ERR_CORRAL_NATIVE_NOT_FOUND');
  assert.strictEqual(err.target, 'linux-riscv64-gnu');
  assert.deepStrictEqual(err.supported, loader.TARGETS);
  assert.match(err.message, /linux riscv64 glibc \(linux-riscv64-gnu\) is not a supported platform/);
  assert.match(err.message, /Supported: linux-x64-gnu, linux-x64-musl, linux-arm64-gnu, linux-arm64-musl\./);
  assert.deepStrictEqual(err.tried, [
    'CORRAL_NATIVE_PATH=/nonexistent/x.node (not found)',
    `${path.join(PKG, 'corral.linux-riscv64-gnu.node')} (not found)`,
    'package corral-linux-riscv64-gnu (none published: not a supported target)',
  ]);
  assert.match(err.stack, /^Error \[ERR_CORRAL_NATIVE_NOT_FOUND\]: corral: linux riscv64 glibc/);

  // A supported target whose package is missing (here: this clone has no node_modules/corral-*).
  const musl = captured(() => loader.loadNative({ host: { platform: 'linux', arch: 'arm64', libc: 'musl' }, env: {} }));
  assert.strictEqual(musl.code, 'ERR_CORRAL_NATIVE_NOT_FOUND');
  assert.match(musl.message, /cannot load the native addon for linux arm64 musl \(linux-arm64-musl\)\. It comes from the package corral-linux-arm64-musl/);
  assert.deepStrictEqual(musl.tried.slice(-1), ['package corral-linux-arm64-musl (not installed)']);
});

function captured(fn) {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail('did not throw');
}

test('npm pack fails loudly when prepack cannot build the addon', (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-prepack-'));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const r = sh(npm, ['pack', '--pack-destination', tmp], { cwd: PKG, env: { ...process.env, CARGO: 'false' } });
  assert.notStrictEqual(r.status, 0, `npm pack succeeded without an addon:\n${r.stdout}`);
  assert.match(r.stderr, /corral build: false build -p corral-node --lib --release failed \(exit 1\), no addon built/);
  assert.deepStrictEqual(fs.readdirSync(tmp), [], 'a tarball was written');
});

test('scripts/pack.js: both tarballs install offline into an empty project; require() and import() run a cluster there', async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-pack-'));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const packed = sh(process.execPath, [path.join(PKG, 'scripts', 'pack.js'), path.join(tmp, 'tgz')], { cwd: PKG });
  assert.strictEqual(packed.status, 0, packed.stderr);
  const [mainTgz, platformTgz] = packed.stdout.trim().split('\n');
  assert.strictEqual(path.basename(mainTgz), `corral-${main.version}.tgz`);
  assert.strictEqual(path.basename(platformTgz), `corral-${HOST}-${main.version}.tgz`);
  const list = (tgz) => sh('tar', ['tzf', tgz]).stdout.trim().split('\n').sort();
  const mainFiles = list(mainTgz);
  for (const f of ['index.js', 'index.mjs', 'index.d.ts', 'register.js', 'register.mjs', 'package.json', 'README.md',
    ...['primary', 'child', 'worker', 'messages', 'supervisor', 'native', 'loader', 'errors', 'utils'].map((m) => `lib/${m}.js`)]) {
    assert.ok(mainFiles.includes(`package/${f}`), `${f} missing from ${mainTgz}:\n${mainFiles.join('\n')}`);
  }
  assert.deepStrictEqual(mainFiles.filter((f) => f.endsWith('.node')), [], 'the main package carries an addon');
  assert.deepStrictEqual(list(platformTgz), ['package/README.md', `package/corral.${HOST}.node`, 'package/package.json'].sort());

  // An empty project, an empty npm cache, no network: only the two tarballs.
  const app = path.join(tmp, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), '{"name":"app","version":"1.0.0","private":true}');
  const inst = sh(npm, ['install', '--offline', '--no-audit', '--no-fund', '--cache', path.join(tmp, 'cache'), mainTgz, platformTgz], { cwd: app });
  assert.strictEqual(inst.status, 0, `npm install failed:\n${inst.stdout}\n${inst.stderr}`);
  assert.deepStrictEqual(fs.readdirSync(path.join(app, 'node_modules')).filter((d) => !d.startsWith('.')).sort(), ['corral', `corral-${HOST}`]);
  fs.copyFileSync(path.join(DIR, 'app.cjs'), path.join(app, 'app.cjs'));
  fs.copyFileSync(path.join(DIR, 'app.mjs'), path.join(app, 'app.mjs'));
  // Run from the app: from under this clone, require('corral') would be the clone itself.
  fs.copyFileSync(path.join(DIR, 'not-found.cjs'), path.join(app, 'not-found.cjs'));
  const cjs = await run(t, ['app.cjs'], { cwd: app, env: APP_ENV });
  assert.strictEqual(cjs.code, 0, cjs.err);
  assert.deepStrictEqual(cjs.lines, ['cjs: pong ping', 'cjs: exit 0 null']);
  const esm = await run(t, ['app.mjs'], { cwd: app, env: APP_ENV });
  assert.strictEqual(esm.code, 0, esm.err);
  assert.deepStrictEqual(esm.lines, ['esm: pong ping default=true', 'esm: exit 0 null']);

  // The installed loader, asked about a platform with no addon, in a process of its own.
  const installedLoader = path.join(app, 'node_modules', 'corral', 'lib', 'loader.js');
  const riscv = await run(t, ['not-found.cjs', installedLoader, 'linux', 'riscv64', 'glibc'], { cwd: app, env: APP_ENV });
  assert.strictEqual(riscv.code, 0, riscv.err);
  const r = JSON.parse(riscv.lines[0]);
  assert.strictEqual(r.code, 'ERR_CORRAL_NATIVE_NOT_FOUND');
  assert.strictEqual(r.target, 'linux-riscv64-gnu');
  assert.match(r.message, /linux riscv64 glibc \(linux-riscv64-gnu\) is not a supported platform/);
  assert.deepStrictEqual(r.supported, loader.TARGETS);

  // node_modules without this platform's package (installed elsewhere, or --omit=optional):
  // require('corral') names this machine's platform and the package it needs.
  fs.rmSync(path.join(app, 'node_modules', `corral-${HOST}`), { recursive: true });
  const gone = await run(t, ['not-found.cjs', 'corral'], { cwd: app, env: APP_ENV });
  assert.strictEqual(gone.code, 0, gone.err);
  const g = JSON.parse(gone.lines[0]);
  assert.strictEqual(g.code, 'ERR_CORRAL_NATIVE_NOT_FOUND');
  assert.strictEqual(g.target, HOST);
  const host = loader.hostPlatform();
  assert.ok(g.message.includes(`cannot load the native addon for ${host.platform} ${host.arch} ${host.libc} (${HOST})`), g.message);
  assert.deepStrictEqual(g.tried, [
    `${path.join(app, 'node_modules', 'corral', `corral.${HOST}.node`)} (not found)`,
    `package corral-${HOST} (not installed)`,
  ]);
});
