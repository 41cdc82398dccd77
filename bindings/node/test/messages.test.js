'use strict';
// Worker-to-primary messages on corral's own path: order against 'online', 'disconnect' and
// 'exit', on the JS-thread readers (default) and the native-thread fallback.
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
