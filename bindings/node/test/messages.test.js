'use strict';
// Messages on corral's own paths: order against 'online', 'disconnect' and
// 'exit' on the JS-thread readers (default) and the native-thread fallback; send callbacks.
const { test } = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { addonOrSkip: guarded, runNode: run } = require('./helpers');

const DIR = path.join(__dirname, 'messages');
const EXPECTED = [
  'disconnect: first=online messages=301 inOrder=true disconnectLast=true  exit=0',
  'early: first=online messages=301 inOrder=true disconnectLast=true  exit=0',
  'exit: first=online messages=301 inOrder=true disconnectLast=true big 5242880 exit=0',
];

for (const [label, env] of [['JS-thread readers', {}], ['receive threads', { CORRAL_NODE_RECV: 'thread' }]]) {
  test(`messages sent before a worker leaves arrive before 'disconnect' and 'exit' (${label})`, async (t) => {
    if (!guarded(t)) return;
    const r = await run(t, [path.join(DIR, 'before-exit.js')], { env });
    assert.strictEqual(r.code, 0, r.err);
    assert.deepStrictEqual(r.lines, EXPECTED);
  });
}

// Only with the JS-thread readers: with receive threads the reader's native thread keeps
// taking messages off the socket while its JS is busy, so the writes complete at once (which
// is also what Node's callback promises: written, not handled).
test('send callbacks wait until the message is written, both directions', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'callback-after-write.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, [
    'primary -> worker: callback err=null waited for the write: true',
    'worker got big(5242880),last',
    'worker -> primary: callback err=null waited for the write: true',
    'exit 0, primary got the big message 1 time(s)',
  ]);
});

test('messages sent in one tick (one Batch frame) arrive in order, with their callbacks in order, before a disconnect', async (t) => {
  if (!guarded(t)) return;
  for (const env of [{}, { CORRAL_NODE_RECV: 'thread' }]) {
    const r = await run(t, [path.join(DIR, 'one-tick.js')], { env });
    assert.strictEqual(r.code, 0, r.err);
    assert.deepStrictEqual(r.lines.slice().sort(), [
      'exit 0',
      'primary callbacks in order: true',
      'primary got 1000 in order: true',
      'worker callbacks in order: true',
      'worker got 1000 in order: true',
      'worker send() returned true: true',
    ], `CORRAL_NODE_RECV=${env.CORRAL_NODE_RECV}`);
  }
});

test('Buffers and typed arrays received in advanced messages stay intact after later messages', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'kept-buffers.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, ['primary kept 50 intact: true', 'worker kept 50 intact: true', 'exit 0']);
});

test('garbage on a message channel: an error on that worker, which is cut off; the primary carries on', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'garbage.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, [
    'bad worker error: ERR_CORRAL_PROTOCOL',
    'bad worker exit 0 null',
    'good worker says: hello',
    'primary exits',
  ]);
});

test('ready() after the worker disconnected throws ERR_IPC_CHANNEL_CLOSED', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'ready-after-disconnect.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines, [
    'ready before disconnect: ok',
    'ready after disconnect: ERR_IPC_CHANNEL_CLOSED Channel closed',
    'exit 0',
  ]);
});

test("'advanced' messages from 10 B to 3 MiB arrive whole and in order, both directions", async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(DIR, 'advanced-sizes.js')]);
  assert.strictEqual(r.code, 0, r.err);
  assert.deepStrictEqual(r.lines.slice().sort(), [
    'exit 0',
    'primary got 9 whole and in order: true',
    'worker got 9 whole and in order: true',
  ]);
});
