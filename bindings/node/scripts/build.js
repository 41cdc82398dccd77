#!/usr/bin/env node
'use strict';
// Builds the addon with cargo (release unless --debug) and copies it next to index.js as
// corral.node, where index.js loads it. Honours CARGO_TARGET_DIR and CARGO.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const debug = process.argv.includes('--debug');
const root = path.resolve(__dirname, '..', '..', '..');
const cargo = process.env.CARGO || 'cargo';
const args = ['build', '-p', 'corral-node', '--lib'];
if (!debug) args.push('--release');
const r = spawnSync(cargo, args, { cwd: root, stdio: 'inherit' });
if (r.error) throw r.error;
if (r.status !== 0) process.exit(r.status || 1);
const targetDir = process.env.CARGO_TARGET_DIR
  ? path.resolve(root, process.env.CARGO_TARGET_DIR)
  : path.join(root, 'target');
const lib = process.platform === 'darwin' ? 'libcorral_node.dylib' : 'libcorral_node.so';
const from = path.join(targetDir, debug ? 'debug' : 'release', lib);
const to = path.join(__dirname, '..', 'corral.node');
// Copy to a temporary name, then rename: a running process may have the old file mapped.
fs.copyFileSync(from, `${to}.tmp`);
fs.renameSync(`${to}.tmp`, to);
console.log(`corral: built ${path.relative(process.cwd(), to)} from ${from}`);
