'use strict';
// cluster.schedulingPolicy = 'kernel-least' (cluster.SCHED_KERNEL_LEAST, CORRAL_SCHED_POLICY=
// kernel-least): as root an eBPF program gives each connection to the worker with the fewest
// open ones, which each worker releases when a connection closes (an atomic on a map shared
// with the program); without CAP_BPF the address runs 'least' through the primary and one
// process warning says why. Also the connections lost when a worker is SIGKILLed under load,
// kernel-least against kernel-rr and rr (printed).
const { test } = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { addonOrSkip: guarded, runNode: run, childEnv } = require('./helpers');

const SCRIPT = path.join(__dirname, 'kernel-least', 'load.js');
const root = process.getuid() === 0;
const env = (extra) => childEnv(extra, ['CORRAL_SCHED_POLICY']);

test("schedulingPolicy 'kernel-least': new clients go to the worker whose connections closed", async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [SCRIPT], { env: env({ MODE: 'held' }) });
  assert.strictEqual(r.code, 0, r.err);
  assert.strictEqual(r.lines[0], 'policy kernel-least', r.lines.join('\n'));
  // Six held connections: two each (the least loaded each time); the two of one worker
  // close and the next two both go to it. Round-robin (kernel-rr) sends one elsewhere.
  assert.strictEqual(r.lines[1], 'spread 2/2/2', r.lines.join('\n'));
  assert.strictEqual(r.lines[2], 'next freed,freed', r.lines.join('\n'));
  assert.strictEqual(r.lines.at(-1), root ? 'warnings 0' : 'warnings 1', r.lines.join('\n'));
});

test('SIGKILL under load: failed requests with kernel-least, kernel-rr and rr', async (t) => {
  if (!guarded(t)) return;
  const figures = [];
  for (const policy of ['kernel-least', 'kernel-rr', 'rr']) {
    const r = await run(t, [SCRIPT], { env: env({ MODE: 'kill', POLICY: policy }) });
    assert.strictEqual(r.code, 0, r.err);
    const get = (k) => Number(r.lines.find((l) => l.startsWith(`${k} `)).split(' ')[1]);
    const [served, failed, kills] = [get('served'), get('failed'), get('kills')];
    figures.push(`${policy}: ${kills} kills, ${served} served, ${failed} failed`);
    assert.strictEqual(kills, 2, r.lines.join('\n'));
    assert.ok(served > 50, `${policy}: only ${served} served`);
    // 16 clients, one request each in flight: a kill can cost at most what was in flight.
    assert.ok(failed <= kills * 16, `${policy}: ${failed} failed for ${kills} kills`);
  }
  console.log(`# SIGKILL under load (16 clients, 2 ms per request, 2 s): ${figures.join('; ')}`);
});

test('CORRAL_SCHED_POLICY=kernel-least without CAP_BPF: least serves, one warning says why', async (t) => {
  if (!guarded(t)) return;
  if (!root) return; // the first test runs unprivileged already
  const args = ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, SCRIPT];
  const e = { ...env({ MODE: 'held', POLICY: 'kernel-least' }), CORRAL_MODULE: path.resolve(__dirname, '..', 'index.js') };
  const r = await new Promise((resolve, reject) => {
    const child = spawn('setpriv', args, { env: e, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
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
    const timer = setTimeout(() => reject(new Error(`setpriv node did not exit within 30 s:\n${out}\n${err}`)), 30000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, lines: out.trim().split('\n'), err });
    });
  });
  assert.strictEqual(r.code, 0, r.err);
  assert.strictEqual(r.lines[2], 'next freed,freed', 'least counts the same closes');
  assert.strictEqual(r.lines.at(-1), 'warnings 1', r.lines.join('\n'));
  assert.match(r.lines[3], /^warning CORRAL_KERNEL_RR_FALLBACK 1 kernel-least: tcp:127\.0\.0\.1:\d+ runs least/);
  assert.match(r.lines[3], /setcap cap_bpf\+ep/);
});
