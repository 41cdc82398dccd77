'use strict';
// Process and environment lifecycle of the Node front: worker_threads, a cluster that ends by
// itself, silent workers, engine failures, fd exhaustion and listener limits (the packed and
// installed package: npm.test.js).
const { test } = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { addonOrSkip: guarded, runNode: run } = require('./helpers');

const DIR = path.join(__dirname, 'lifecycle');

test('loading corral in a worker_thread and ending the thread neither hangs nor crashes', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'in-worker-thread.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, ['in thread: isPrimary=true', 'worker online', 'thread exit 0']);
});

test('a dgram socket closed by its own bind callback neither crashes the worker nor reports listening', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'short-lived-dgram.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, ['kept socket bound true', 'worker exit 0', "'listening' events: udp4 127.0.0.1"]);
});

// lib/child.js tells the primary when a server that refused a connection at its maxConnections
// has room again (a connection closed), so the waiting client is dealt at once; without it the
// primary's retry delay (up to 50 ms) decides. Timed in the worker, on its own clock: with the
// message a round takes 0.1-0.5 ms, without it 0.4-50 ms (under 3 ms about one time in five,
// measured). A round may be slow on a loaded machine, so most rounds, not all, must be fast.
test('a worker at its maxConnections says when it has room again', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'max-connections-room.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.strictEqual(r.lines.at(-1), 'done', r.lines.join('\n'));
  const gaps = r.lines.slice(0, -1).map((l) => Number(/: ([\d.]+)ms$/.exec(l)[1]));
  assert.strictEqual(gaps.length, 7, r.lines.join('\n'));
  const fast = gaps.filter((g) => g < 3).length;
  assert.ok(fast >= 5, `rounds dealt within 3 ms of the room appearing: ${fast} of 7 (${gaps.join(', ')} ms)`);
});

test('a finished cluster lets the process exit', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'finished-cluster.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines.sort(), ['primary exits by itself', 'worker 1 exit 0', 'worker 2 exit 0']);
});

test('an engine failure reaches JS as an error, ends the workers and lets the process exit', async (t) => {
  if (!guarded(t)) return;
  const script = path.join(DIR, 'engine-failure.js');
  const env = { CORRAL_FAULT: 'engine-panic' };
  const r = await run(t, [script], { env });
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, [
    'cluster error ERR_CORRAL_ENGINE true',
    'exit SIGKILL workers left 1',
    'exit SIGKILL workers left 0',
    'fork after failure ERR_CORRAL_ENGINE',
    'primary exits 0',
  ]);
  const s = await run(t, [script], { env: { ...env, MODE: 'supervised' } });
  assert.strictEqual(s.code, 0, s.err);
  assert.deepStrictEqual(s.lines, [
    'supervisor error ERR_CORRAL_ENGINE true',
    'exit SIGKILL workers left 1',
    'exit SIGKILL workers left 0',
    'fork after failure ERR_CORRAL_ENGINE',
    'primary exits 0',
  ]);
  const u = await run(t, [script], { env: { ...env, MODE: 'unhandled' } });
  assert.notStrictEqual(u.code, 0);
  assert.match(u.err, /ERR_CORRAL_ENGINE|fault injected/);
  assert.deepStrictEqual(u.lines.slice(0, 2), ['exit SIGKILL workers left 1', 'exit SIGKILL workers left 0']);
});

test('a worker out of fds reports EMFILE for a lost connection instead of exiting 0', async (t) => {
  if (!guarded(t)) return;
  const script = path.join(DIR, 'worker-emfile.js');
  const r = await run(t, [script]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, ['request while full failed', 'exit 1']);
  assert.match(r.err, /a connection from the primary \(closed by the kernel\).*\(EMFILE\)/);
  assert.match(r.err, /code: 'EMFILE'/);
  // Handled: the channel stays in step and the worker serves once it has fds again.
  const h = await run(t, [script], { env: { MODE: 'handled' } });
  assert.strictEqual(h.code, 0, h.err);
  // The worker's report and the client's failure race each other.
  assert.deepStrictEqual(h.lines.slice(0, 2).sort(), ['request while full failed', 'worker error EMFILE errno -24 recvmsg']);
  assert.deepStrictEqual(h.lines.slice(2), ['request after 200', 'exit 0']);
});

test('silent workers: stdout is piped to the primary', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'silent.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines.sort(), ['captured: hello from worker 1', 'exit 0']);
});

test('CORRAL_MAX_LISTENERS_PER_WORKER: a worker past the limit gets EINVAL, the others serve', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'listener-limit.js')], { env: { CORRAL_MAX_LISTENERS_PER_WORKER: '2' } });
  assert.strictEqual(r.code, 0, r.err);
  // The limit counts in request order; the answers reach the servers in any order.
  const done = r.lines.pop();
  assert.deepStrictEqual(r.lines.sort(), ['server 0 listening', 'server 1 listening', 'server 2 error EINVAL bind']);
  assert.strictEqual(done, 'done 200 200');
});

test('CORRAL_* overrides out of range or unknown: fork() throws naming the variable (err.option)', async (t) => {
  if (!guarded(t)) return;
  const print = `
    const cluster = require(process.env.CORRAL_MODULE);
    try { cluster.fork(); } catch (e) { console.log(e.code, e.option, JSON.stringify(e.reason), e.message.startsWith(e.option + ': ' + e.reason)); }
  `;
  const cases = [
    [{ CORRAL_MAX_LISTENERS_PER_WORKER: '0' }, 'CORRAL_MAX_LISTENERS_PER_WORKER "must be an integer between 1 and 65536 (got 0)" true'],
    [{ CORRAL_WINDOW: '0' }, 'CORRAL_WINDOW "must be an integer between 1 and 65536 (got 0)" true'],
    [{ CORRAL_STALL_TIMEOUT_MS: '5' }, 'CORRAL_STALL_TIMEOUT_MS "must be between 10 ms and 7 days (got 5 ms)" true'],
    [{ CORRAL_ORPHAN_LISTENER_GRACE_MS: 'soon' }, 'CORRAL_ORPHAN_LISTENER_GRACE_MS "\\"soon\\" is not a whole number" true'],
    [{ CORRAL_SCHED_POLICY: 'fastest' }, 'CORRAL_SCHED_POLICY "unknown scheduling policy \\"fastest\\": expected \\"rr\\", \\"shared\\", \\"kernel-rr\\", \\"kernel-least\\", \\"sticky\\", \\"least\\" or \\"least-p2c\\"" true'],
  ];
  for (const [env, want] of cases) {
    const r = await run(t, ['-e', print], { env });
    assert.strictEqual(r.code, 0, r.err);
    assert.deepStrictEqual(r.lines, [`ERR_CORRAL_INVALID_OPTION ${want}`]);
  }
});

test('a listen address the engine refuses: the server\'s error names the option (err.option)', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, ['-e', `
    const cluster = require(process.env.CORRAL_MODULE);
    if (cluster.isPrimary) {
      cluster.fork().on('exit', (code) => console.log('worker exit', code));
    } else {
      // Longer than PATH_MAX: refused in the worker before anything reaches the primary.
      require('net').createServer().on('error', (e) => {
        console.log(e.code, e.option, e.message.startsWith('address: invalid listen address'));
        process.exit(0);
      }).listen('/tmp/' + 'x'.repeat(5000));
    }
  `]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, ['ERR_CORRAL_INVALID_OPTION address true', 'worker exit 0']);
});

test('a listen the primary refuses while the worker disconnects: the engine\'s error, not EINVAL', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, ['-e', `
    const cluster = require(process.env.CORRAL_MODULE);
    const net = require('net');
    if (cluster.isPrimary) {
      const w = cluster.fork();
      w.once('listening', (a) => {
        // A connection the worker holds: its server's close (the disconnect) waits for it.
        const c = net.connect(a.port, '127.0.0.1', () => c.write('x'));
        c.on('error', () => {});
        w.once('message', () => w.disconnect());
      });
      w.on('exit', (code) => console.log('worker exit', code, w.exitedAfterDisconnect));
    } else {
      let held;
      net.createServer((s) => {
        held = s;
        process.send('held');
      }).listen(0, '127.0.0.1');
      // The primary asked for the disconnect: a new listen now is refused by the primary.
      const poll = setInterval(() => {
        if (!cluster.worker.exitedAfterDisconnect) return;
        clearInterval(poll);
        net.createServer().on('error', (e) => {
          console.log(e.code, e.message);
          held.destroy();
        }).listen(0, '127.0.0.1');
      }, 5);
    }
  `]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, ['ERR_CORRAL_WRONG_STATE worker 1 is disconnecting', 'worker exit 0 true']);
});

test('a disconnecting worker serves a connection it was handed before its request arrived', async (t) => {
  if (!guarded(t)) return;
  const script = path.join(DIR, 'disconnect-unread.js');
  const r = await run(t, [script]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines.sort(), ['client got "HTTP/1.1 200 OK"', 'worker exit 0 exitedAfterDisconnect=true']);
  // A client that never sends is really idle: Node 26's close() destroys it (once the grace
  // ends), 20-24's waits for it.
  const s = await run(t, [script], { env: { MODE: 'silent' } });
  assert.strictEqual(s.code, 0, s.err);
  const held = Number(process.versions.node.split('.')[0]) >= 26 ? 'held about the grace' : 'held until the client left';
  assert.deepStrictEqual(s.lines.sort(), ['client got ""', held, 'worker exit 0 exitedAfterDisconnect=true']);
});
