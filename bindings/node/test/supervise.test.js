'use strict';
// cluster.supervise(): corral's supervisor through the Node front, with real workers.
const { test } = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { addonOrSkip, runNode } = require('./helpers');

const APP = path.join(__dirname, 'supervise', 'app.js');

function scenario(name, check) {
  test(name, async (t) => {
    if (!addonOrSkip(t)) return;
    check(await runNode(t, [APP, name]));
  });
}

scenario('reload', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.match(lines[0], /^reload ok=true replaced=2 workers 1,2 -> 3,4$/);
  assert.strictEqual(lines[1], 'load ran=true failed=0');
  assert.strictEqual(lines[2], 'second reload ok=true');
  assert.strictEqual(lines[3], 'shutdown clean=true');
});

scenario('rollback', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, [
    'reload ok=false replaced=0 reason=true',
    'old workers serve=true same=true',
    'shutdown clean=true',
  ]);
});

scenario('crashloop', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.strictEqual(lines[0], 'crashloop slot=0 exits=3,3,3');
  // Boot failures (exit before listening), growing delays.
  assert.strictEqual(lines[1], 'restarts boot:50 boot:100');
  assert.strictEqual(lines[2], 'first restart {"slot":0,"worker":2,"previous":1,"cause":{"type":"boot","exit":{"code":3,"signal":null}},"delay":50}');
  assert.strictEqual(lines[3], 'crashloop event {"slot":0,"exits":[{"code":3,"signal":null},{"code":3,"signal":null},{"code":3,"signal":null}]}');
  assert.strictEqual(lines[4], 'shutdown clean=true');
});

scenario('norestart', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, ['norestart code=78 restarts=0', 'shutdown clean=true']);
});

scenario('hang', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, ['hang slot=0 silentFor>=400=true detected<3s=true', 'restart cause=hang', 'shutdown clean=true']);
});

scenario('stdio', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, ['stdio length=5 fd4 readable=true writable=true', 'fd4 answer=pong ping', 'shutdown clean=true']);
});

scenario('metrics', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, [
    'metrics workers=2 states=ready,ready rss>0=true',
    'prometheus parses=true has_info=true',
    'shutdown clean=true',
  ]);
});

scenario('sigterm', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, ['slow request finished: done', 'primary exit 0']);
});

scenario('invalid', ({ code, lines, err }) => {
  assert.strictEqual(code, 0, err);
  assert.deepStrictEqual(lines, [
    'ERR_CORRAL_INVALID_OPTION TypeError option=workers: supervise(): workers must be "auto" or an integer >= 1 (got 0)',
    'ERR_CORRAL_INVALID_OPTION TypeError option=restart.bogus: supervise(): restart.bogus is not a known option',
    'ERR_CORRAL_INVALID_OPTION TypeError option=restart.initialDelay: supervise(): restart.initialDelay must be a number >= 0 (got -5)',
    'ERR_CORRAL_INVALID_OPTION TypeError option=reload.batch: supervise(): reload.batch must be an integer >= 1 (got 0)',
    'ERR_CORRAL_INVALID_OPTION TypeError option=heartbeat.timeout: supervise(): heartbeat.timeout must be greater than heartbeat.interval',
    'ERR_CORRAL_INVALID_OPTION TypeError option=workers: supervise(): workers must be an integer between 1 and 4096 (got 1000000000)',
    'ERR_CORRAL_INVALID_OPTION TypeError option=restart.factor: supervise(): restart.factor must be a number between 1 and 1000 (got 1e300)',
    'ERR_CORRAL_INVALID_OPTION TypeError option=restart.maxDelay: supervise(): restart.maxDelay must be a number of milliseconds between 0 and 604800000 (got 1e300)',
    'ERR_CORRAL_INVALID_OPTION TypeError option=shutdown.timeout: supervise(): shutdown.timeout must be a number of milliseconds between 0 and 604800000 (got 691200000)',
    'ERR_CORRAL_INVALID_OPTION TypeError option=reload.batch: supervise(): reload.batch must be an integer between 1 and 4096 (got 5000)',
    'ERR_CORRAL_INVALID_OPTION TypeError option=metrics.host: supervise(): metrics.host "nowhere" is not an IP address',
  ]);
});
