'use strict';
// Scenario: settings.uid / settings.gid. As root the worker runs as nobody (65534) and keeps no
// supplementary groups; as anyone else (or when nobody could not read this script or node) it
// asks for its own ids (the only ones allowed), so the output is the same either way.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const fs = require('node:fs');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  const root = process.getuid() === 0 && othersCanRun(__filename) && othersCanRun(process.execPath);
  const uid = root ? 65534 : process.getuid();
  const gid = root ? 65534 : process.getgid();
  cluster.setupPrimary({ uid, gid });
  console.log(`primary: settings has uid ${cluster.settings.uid === uid} gid ${cluster.settings.gid === gid}`);
  const w = cluster.fork();
  w.on('message', (m) => {
    console.log(`worker runs as the asked uid ${m.uid === uid}, gid ${m.gid === gid}; ` +
      `supplementary groups ${m.groups.length === 0 || !root ? 'as expected' : JSON.stringify(m.groups)}`);
    w.disconnect();
  });
  w.on('exit', (code, signal) => console.log(`worker exit ${code} ${signal}`));
} else {
  const line = fs.readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('Groups:'));
  const groups = line.slice('Groups:'.length).trim().split(/\s+/).filter(Boolean);
  process.send({ uid: process.getuid(), gid: process.getgid(), groups });
}

// Whether a user without privileges can reach and read `file` (every ancestor searchable).
function othersCanRun(file) {
  const path = require('node:path');
  let p = fs.realpathSync(file);
  if ((fs.statSync(p).mode & 0o004) === 0) return false;
  while (p !== path.dirname(p)) {
    p = path.dirname(p);
    if ((fs.statSync(p).mode & 0o001) === 0) return false;
  }
  return true;
}
