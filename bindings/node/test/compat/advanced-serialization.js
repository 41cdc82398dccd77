'use strict';
// Scenario: setupPrimary({ serialization: 'advanced' }). The primary sends one value holding
// Map, Set, Date, BigInt, Buffer, typed arrays, an ArrayBuffer, a RegExp, an Error, sparse
// arrays, special numbers and a circular reference; the worker describes what arrived and sends
// it back; the primary describes the echo. Values V8's serializer cannot clone throw at send().
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const util = require('node:util');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  cluster.setupPrimary({ serialization: 'advanced' });
  console.log(`settings.serialization ${cluster.settings.serialization}`);
  const w = cluster.fork();
  w.on('online', () => {
    for (const bad of [{ fn: () => 1 }, { sym: Symbol('s') }]) {
      try {
        w.send(bad);
        console.log('primary send of an uncloneable value: no throw');
      } catch (err) {
        console.log(`primary send of an uncloneable value throws: ${err.name}: ${err.message}`);
      }
    }
    w.send({ cmd: 'value', value: makeValue() });
  });
  w.on('message', (msg) => {
    console.log('worker received:');
    for (const line of msg.described) console.log(`  ${line}`);
    console.log('primary received the echo:');
    for (const line of describe(msg.value)) console.log(`  ${line}`);
    w.disconnect();
  });
} else {
  process.on('message', (msg) => {
    if (msg.cmd === 'value') process.send({ described: describe(msg.value), value: msg.value });
  });
}

function makeValue() {
  const circ = { name: 'circ' };
  circ.self = circ;
  const shared = { tag: 'shared' };
  const sparse = [1, , 3]; // eslint-disable-line no-sparse-arrays
  return {
    map: new Map([['a', 1], [2, { b: true }]]),
    set: new Set([1, 'two', 3n]),
    date: new Date(0),
    big: 12345678901234567890n,
    negBig: -1n,
    buf: Buffer.from('h\u00e9llo'),
    u8: new Uint8Array([1, 2, 255]),
    f64: new Float64Array([1.5, -0, NaN]),
    i32: Int32Array.of(-1, 2),
    u8sub: new Uint8Array([0, 1, 2, 3, 4, 5]).subarray(2, 4),
    ab: new Uint8Array([9, 8]).buffer,
    regexp: /ab+c/gi,
    err: new RangeError('boom'),
    sparse,
    undef: undefined,
    nan: NaN,
    negZero: -0,
    inf: -Infinity,
    boxed: Object(1),
    circ,
    twice: [shared, shared],
    nested: [[new Map([['k', new Set([1])]])]],
  };
}

function describe(v) {
  const inspect = (x) => util.inspect(x, { depth: 6, breakLength: Infinity, compact: true });
  const lines = [];
  for (const key of Object.keys(v)) {
    const x = v[key];
    if (key === 'err') {
      // The stack holds absolute paths: describe the error without it.
      lines.push(`err: ${Object.prototype.toString.call(x)} instanceof RangeError ${x instanceof RangeError} ` +
        `instanceof Error ${x instanceof Error} name=${x.name} message=${x.message} has stack ${typeof x.stack === 'string'}`);
      continue;
    }
    const ctor = x !== null && typeof x === 'object' ? x.constructor && x.constructor.name : typeof x;
    if (key === 'ab') {
      // util.inspect of an ArrayBuffer changed in Node 26 (`[byteLength]`): print the bytes.
      lines.push(`ab: ${ctor} <${Buffer.from(x).toString('hex')}> byteLength ${x.byteLength}`);
      continue;
    }
    lines.push(`${key}: ${ctor} ${inspect(x)}`);
  }
  lines.push(`'undef' key present ${'undef' in v}`);
  // Where a view lands in its backing ArrayBuffer is an implementation detail: not printed.
  lines.push(`Buffer.isBuffer(buf) ${Buffer.isBuffer(v.buf)}, u8sub.length ${v.u8sub.length}`);
  lines.push(`circ.self === circ ${v.circ.self === v.circ}, twice[0] === twice[1] ${v.twice[0] === v.twice[1]}`);
  lines.push(`Object.is(negZero, -0) ${Object.is(v.negZero, -0)}, 1 in sparse ${1 in v.sparse}`);
  return lines;
}
