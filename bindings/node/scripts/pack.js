#!/usr/bin/env node
'use strict';
// Packs what npm users install on this machine: the main package `corral` (JavaScript only) and
// the platform package of this machine's target (npm/<target>/, its addon), into one directory,
// and checks that each tarball holds what it must. Both `npm pack`s run their `prepack`, which
// builds the addon with cargo or fails.
//
//   node scripts/pack.js [DIR]     DIR defaults to <repo>/target/npm-pack
//
// Prints the two tarballs' paths, main package first, one a line, on stdout; the build's
// output goes to stderr. Honours CARGO and CARGO_TARGET_DIR (through scripts/build.js).
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { TARGETS, addonFile, hostPlatform, packageOf, targetOf } = require('../lib/loader');

function fail(message) {
  console.error(`corral pack: ${message}`);
  process.exit(1);
}

const pkgDir = path.resolve(__dirname, '..');
const root = path.resolve(pkgDir, '..', '..');
const dest = path.resolve(process.argv[2] || path.join(root, 'target', 'npm-pack'));
const target = targetOf(hostPlatform());
if (!TARGETS.includes(target)) fail(`this machine is ${target}, which has no platform package (supported: ${TARGETS.join(', ')})`);
fs.mkdirSync(dest, { recursive: true });

function pack(dir) {
  // stdout is the tarball's name; the prepack build's output (stderr) goes through.
  const r = spawnSync(process.env.NPM || 'npm', ['pack', '--silent', '--pack-destination', dest], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.error) fail(`cannot run npm: ${r.error.message}`);
  if (r.status !== 0) fail(`npm pack in ${dir} failed (exit ${r.status}):\n${r.stdout}`);
  const name = r.stdout.trim().split('\n').pop();
  const tgz = path.join(dest, name);
  if (!name || !fs.existsSync(tgz)) fail(`npm pack in ${dir} printed ${JSON.stringify(r.stdout)}, no tarball at ${tgz}`);
  return tgz;
}

function listing(tgz) {
  const r = spawnSync('tar', ['tzf', tgz], { encoding: 'utf8' });
  if (r.status !== 0) fail(`tar tzf ${tgz} failed: ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

const main = pack(pkgDir);
const stray = listing(main).filter((f) => f.endsWith('.node'));
if (stray.length) fail(`${main} carries ${stray.join(', ')}: the addon belongs in ${packageOf(target)}`);
const platform = pack(path.join(pkgDir, 'npm', target));
const want = `package/${addonFile(target)}`;
if (!listing(platform).includes(want)) fail(`${platform} lacks ${want}`);
console.log(main);
console.log(platform);
