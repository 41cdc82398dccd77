'use strict';
// The external programs bench/run needs: wrk (required, installed with apt-get when missing)
// and nginx (optional anchor for the C rows, installed when apt-get can, else "not installed").

const fs = require('node:fs');
const { spawnSync } = require('node:child_process');

function which(cmd) {
  for (const dir of (process.env.PATH || '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = `${dir}/${cmd}`;
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return null;
}

let aptUpdated = false;

/** apt-get install -y <pkg>; runs `apt-get update` once and retries if the first try fails. */
function aptInstall(pkg, say) {
  if (!which('apt-get') || process.getuid?.() !== 0) {
    say(`cannot install ${pkg}: needs apt-get and root`);
    return false;
  }
  const run = (args) =>
    spawnSync('apt-get', args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 300_000,
    }).status === 0;
  say(`${pkg} not found: installing it with \`apt-get install -y ${pkg}\``);
  if (run(['install', '-y', '-q', pkg])) return true;
  if (!aptUpdated) {
    aptUpdated = true;
    say('apt-get install failed; running `apt-get update` and trying again');
    if (run(['update', '-q']) && run(['install', '-y', '-q', pkg])) return true;
  }
  say(`apt-get install ${pkg} failed`);
  return false;
}

/** Path of wrk, installing it if needed; throws if there is none (nothing can be measured). */
function ensureWrk(say) {
  let p = which('wrk');
  if (!p && aptInstall('wrk', say)) p = which('wrk');
  if (!p) throw new Error('wrk is required and could not be installed (apt-get install -y wrk)');
  return p;
}

/** Path of nginx, trying nginx-light then nginx; null if neither can be had. */
function findNginx(say) {
  let p = which('nginx');
  if (!p && (aptInstall('nginx-light', say) || aptInstall('nginx', say))) p = which('nginx');
  return p;
}

/** First line of `cmd args` (stdout or stderr), for the report header. */
function versionOf(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
  return `${r.stdout || ''}${r.stderr || ''}`.split('\n')[0].trim();
}

module.exports = { which, ensureWrk, findNginx, versionOf };
