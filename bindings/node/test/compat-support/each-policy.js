'use strict';
// For compat scenarios that check a behaviour under both scheduling policies: the scenario's
// first run (the driver) runs the same file once per policy, one after the other, each in a fresh
// primary (cluster.schedulingPolicy is read once, at the first fork). Not in compat/, where every
// .js file is a scenario.
//
//   const policy = require('../compat-support/each-policy')(cluster, 'MY_SCENARIO_POLICY');
//   if (policy === null) return; // this was the driver; it printed 'driver exit 0'
//   // primary or worker of one policy's cluster; policy is 'rr' or 'none'
const { spawnSync } = require('node:child_process');

module.exports = function eachPolicy(cluster, envName, { timeoutMs = 20000 } = {}) {
  const policy = process.env[envName];
  if (cluster.isPrimary && !policy) {
    for (const p of ['rr', 'none']) {
      const r = spawnSync(process.execPath, [require.main.filename], {
        env: { ...process.env, [envName]: p },
        stdio: ['ignore', 'inherit', 'inherit'],
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
      });
      if (r.status !== 0) console.log(`${p}: exited with ${r.status} ${r.signal}`);
    }
    console.log('driver exit 0');
    return null;
  }
  if (cluster.isPrimary) cluster.schedulingPolicy = policy === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
  return policy;
};
