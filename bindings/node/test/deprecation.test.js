'use strict';
// No deprecated Node API in corral: a cluster whose worker serves TCP and a unix socket runs with
// --pending-deprecation --throw-deprecation (a deprecated call kills the worker, a warning shows
// on stderr) under node:cluster and under corral, both scheduling policies. Runs on every Node
// version the package claims (.ci/run).
//
//   node --test bindings/node/test/deprecation.test.js
const { test } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const helpers = require('./helpers');

const SCRIPT = path.join(__dirname, 'deprecation', 'serve.js');

for (const policy of ['rr', 'none']) {
  for (const [label, env] of [['node:cluster', {}], ['corral', { CORRAL_MODULE: helpers.MODULE }]]) {
    test(`${label}, policy ${policy}: no deprecation warning`, async (t) => {
      if (env.CORRAL_MODULE && !helpers.addonOrSkip(t)) return;
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-dep-'));
      t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
      const r = await helpers.runGroup(t, SCRIPT, [], {
        env: helpers.childEnv({
          ...env,
          NODE_OPTIONS: '--pending-deprecation --throw-deprecation',
          NODE_CLUSTER_SCHED_POLICY: policy,
          SOCK: path.join(dir, 's.sock'),
        }, ['CORRAL_MODULE']),
        timeoutMs: 30_000,
      });
      assert.ifError(r.spawnError);
      assert.ok(!r.timedOut, `not finished after 30 s. stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
      assert.deepStrictEqual(
        { exit: r.exit, stdout: r.stdout, stderr: r.stderr },
        { exit: { code: 0, signal: null }, stdout: 'pipe ok, tcp ok\nworker exit 0 null\n', stderr: '' },
      );
    });
  }
}

// lib/child.js constructs net's handle classes with these types (tcp_wrap.h, pipe_wrap.h), and reads
// ipv6Only from _listen2's flags with libuv's UV_TCP_IPV6ONLY, instead of reading them from
// process.binding().
test('the handle types lib/child.js uses are those of this Node', () => {
  assert.deepStrictEqual(
    [process.binding('tcp_wrap').constants.SOCKET, process.binding('tcp_wrap').constants.SERVER,
      process.binding('pipe_wrap').constants.SOCKET, process.binding('pipe_wrap').constants.SERVER,
      process.binding('tcp_wrap').constants.UV_TCP_IPV6ONLY],
    [0, 1, 0, 1, 1],
  );
});
