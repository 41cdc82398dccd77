#!/usr/bin/env node
'use strict';
// Builds the addon with cargo (release unless --debug) and copies it, named for this machine's
// target (corral.linux-x64-gnu.node, ...; lib/loader.js), where the loader looks:
//
//   node scripts/build.js                     next to index.js (a clone, `npm run build`)
//   node scripts/build.js --platform-package  into npm/<target>/, the package npm installs
//                                             (the main package's `prepack`)
//   node scripts/build.js --platform-package linux-x64-gnu
//                                             the same, failing unless this machine is that
//                                             target (the platform package's own `prepack`)
//
// Fails loudly (non-zero exit, a message saying what is missing) rather than leave a package
// without its addon. Honours CARGO_TARGET_DIR and CARGO.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { TARGETS, addonFile, hostPlatform, targetOf } = require('../lib/loader');

function fail(message) {
  console.error(`corral build: ${message}`);
  process.exit(1);
}

const args = process.argv.slice(2);
const debug = args.includes('--debug');
const pkgAt = args.indexOf('--platform-package');
const host = targetOf(hostPlatform());
const pkgDir = path.resolve(__dirname, '..');
let destDir = pkgDir;
if (pkgAt >= 0) {
  const wanted = args[pkgAt + 1] && !args[pkgAt + 1].startsWith('--') ? args[pkgAt + 1] : host;
  if (wanted !== host) {
    fail(`the package for ${wanted} needs an addon built for ${wanted}, this machine is ${host} (cross builds are not scripted yet)`);
  }
  if (!TARGETS.includes(host)) {
    fail(`this machine is ${host}, which has no platform package (supported: ${TARGETS.join(', ')}); "npm run build" builds for local use`);
  }
  destDir = path.join(pkgDir, 'npm', host);
  if (!fs.existsSync(path.join(destDir, 'package.json'))) fail(`${destDir}/package.json is missing`);
}

const root = path.resolve(pkgDir, '..', '..');
const cargo = process.env.CARGO || 'cargo';
const cargoArgs = ['build', '-p', 'corral-node', '--lib'];
if (!debug) cargoArgs.push('--release');
const r = spawnSync(cargo, cargoArgs, { cwd: root, stdio: 'inherit' });
if (r.error) fail(`cannot run ${cargo} (Rust's cargo builds the addon): ${r.error.message}`);
if (r.status !== 0) fail(`${cargo} ${cargoArgs.join(' ')} failed (${r.signal || `exit ${r.status}`}), no addon built`);
const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(root, process.env.CARGO_TARGET_DIR)
  : path.join(root, 'target');
const lib = process.platform === 'darwin' ? 'libcorral_node.dylib' : 'libcorral_node.so';
const from = path.join(targetDir, debug ? 'debug' : 'release', lib);
const to = path.join(destDir, addonFile(host));
// Copy to a temporary name, then rename: a running process may have the old file mapped.
fs.copyFileSync(from, `${to}.tmp`);
fs.renameSync(`${to}.tmp`, to);
console.error(`corral: built ${path.relative(process.cwd(), to) || to} from ${from}`);
