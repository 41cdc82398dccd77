'use strict';
// The Node boundary of the addon (bindings/node/src/error.rs, fault.rs): native errors are napi
// errors with Node's `code`, and a panic in Rust, called from JS or from libuv, becomes a JS
// error instead of aborting the process.
const { test } = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { addonOrSkip: guarded, runNode: run } = require('./helpers');

test('native calls throw errors with Node\'s code and the engine\'s message, without a "[CODE]" prefix', (t) => {
  if (!guarded(t)) return;
  const { addon } = require('../lib/native');
  assert.throws(() => new addon.NativePrimary('bogus', 32, () => {}), (e) => {
    assert.ok(e instanceof Error);
    // A refused option: its own code, and its name and the reason as properties.
    assert.strictEqual(e.code, 'ERR_CORRAL_INVALID_OPTION');
    assert.strictEqual(e.option, 'policy');
    assert.strictEqual(e.reason, 'unknown scheduling policy "bogus": expected "rr", "shared", "kernel-rr", "kernel-least", "sticky", "least" or "least-p2c"');
    assert.strictEqual(e.message, `policy: ${e.reason}`);
    return true;
  });
  const p = new addon.NativePrimary('rr', undefined, () => {}); // the engine's default window
  t.after(() => p.close());
  assert.throws(() => p.kill(77, 15), { code: 'ERR_CORRAL_NO_SUCH_WORKER', message: 'no worker with id 77' });
  assert.throws(() => p.supervisorMetrics(), { code: 'ERR_CORRAL_WRONG_STATE', message: 'call supervise() first' });
  // An OS failure: the errno name is the code; lib/errors.js adds errno as Node's system errors.
  const { nativeError } = require('../lib/errors');
  let err;
  try {
    p.send(1, Buffer.from('x'), [0x7ffffff0]);
  } catch (e) {
    err = e;
  }
  assert.ok(err, 'send with a closed fd did not throw');
  assert.strictEqual(err.code, 'EBADF');
  assert.match(err.message, /^dup fd 2147483632: /);
  assert.strictEqual(nativeError(err).errno, -9);
  assert.match(err.stack, /^Error \[EBADF\]: dup fd/);
});

test('the hidden panic export does nothing without CORRAL_FAULT=panic', (t) => {
  if (!guarded(t)) return;
  if (process.env.CORRAL_FAULT) return t.skip('CORRAL_FAULT is set');
  const { addon } = require('../lib/native');
  assert.throws(() => addon.__panicForTest('call', () => {}), { code: 'ERR_CORRAL_WRONG_STATE' });
});

test('a panic in a native call or in a libuv callback becomes a JS error, not an abort', async (t) => {
  if (!guarded(t)) return;
  const r = await run(t, [path.join(__dirname, 'boundary', 'panic.js')], { env: { CORRAL_FAULT: 'panic' } });
  assert.strictEqual(r.code, 0, `${r.lines.join('\n')}\n${r.err}`);
  assert.deepStrictEqual(r.lines, [
    'call: thrown true true',
    'uv: uncaught true ERR_CORRAL_ENGINE true',
    'still running',
    'exit 0',
  ], r.err);
});
