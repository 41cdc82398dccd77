'use strict';
// lib/v8wire.js writes the bytes v8.serialize() writes, for the values it takes, and declines
// the others (the sender then uses v8.Serializer). No addon needed.
const { test } = require('node:test');
const assert = require('node:assert');
const v8 = require('node:v8');
const { writeValue, readValue, UNSUPPORTED, NO_ROOM, DECLINED } = require('../lib/v8wire');

function written(value, size = 4096) {
  const buf = Buffer.alloc(size + 8);
  const end = writeValue(buf, 8, 8 + size, value);
  return end < 0 ? end : buf.subarray(8, end);
}

test('simple values are written byte for byte as v8.serialize() writes them', () => {
  const values = [
    null, undefined, true, false, 0, 1, -1, 63, 64, -65, 1000000, 2 ** 30, -(2 ** 31), 2 ** 31 - 1,
    2 ** 31, -(2 ** 31) - 1, 1.5, -0, NaN, Infinity, -Infinity, Number.MAX_VALUE, 2 ** 53,
    '', 'x', 'x'.repeat(200), 'café ÿ', 'a\u0000b',
    {}, [], { seq: 1, data: 'x'.repeat(64) }, { cmd: 'NODE_X', n: -3, ok: true, nothing: null },
    [1, 'two', [3, [4]], { five: 5 }], { a: { b: { c: [true, false, null, undefined] } } },
    { key1: 1, _k: 2, k2: 3 }, ['a', 'b'].concat(['c']),
  ];
  for (const v of values) {
    assert.deepStrictEqual(written(v), Buffer.from(v8.serialize(v)), `value ${String(v && JSON.stringify(v))}`);
    if (v === v) assert.deepStrictEqual(v8.deserialize(written(v)), v);
  }
});

test('what v8.serialize() writes for simple values reads back as v8.deserialize() reads it', () => {
  const values = [
    null, undefined, true, false, 0, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 1.5, -0, NaN, -Infinity,
    '', 'café ÿ', 'x'.repeat(300), {}, [], { seq: 7, data: 'x'.repeat(64) },
    [1, 'two', [3, [4]], { five: 5, six: [] }], { a: { b: { c: [true, false, null, undefined] } } },
  ];
  for (const v of values) {
    const bytes = Buffer.concat([Buffer.from('pad'), v8.serialize(v), Buffer.from('pad')]);
    const got = readValue(bytes, 3, bytes.length - 3);
    assert.notStrictEqual(got, DECLINED, `declined ${String(v && JSON.stringify(v))}`);
    assert.deepStrictEqual(got, v8.deserialize(bytes.subarray(3, bytes.length - 3)));
  }
  // Object.is(-0) is kept, and the objects are plain.
  const read = (v) => readValue(v8.serialize(v), 0, v8.serialize(v).length);
  assert.ok(Object.is(read(-0), -0));
  assert.strictEqual(Object.getPrototypeOf(read({})), Object.prototype);
});

test('what the reader does not know is declined, for v8.deserialize() to read', () => {
  const shared = { x: 1 };
  const values = [
    'ā two-byte', new Date(0), new Map([[1, 2]]), 10n, Buffer.from('x'), { a: shared, b: shared },
    { 1: 'index key' }, { ['__proto__']: 1 }, [1, , 3], Object.assign([1], { extra: 1 }),
    new Error('e'), /re/, new Set([1]),
  ];
  for (const v of values) {
    const bytes = v8.serialize(v);
    assert.strictEqual(readValue(bytes, 0, bytes.length), DECLINED, `read ${typeof v}`);
  }
  // Truncated, trailing bytes, another header.
  const ok = v8.serialize({ seq: 1, data: 'abc' });
  for (let n = 0; n < ok.length; n++) assert.strictEqual(readValue(ok, 0, n), DECLINED, `cut at ${n}`);
  assert.strictEqual(readValue(Buffer.concat([ok, Buffer.from([0x30])]), 0, ok.length + 1), DECLINED);
  const other = Buffer.from(ok);
  other[1] = 0x0d;
  assert.strictEqual(readValue(other, 0, other.length), DECLINED);
});

test('values written differently by V8, or not plain, are declined', () => {
  const shared = { x: 1 };
  const cyclic = {};
  cyclic.self = cyclic;
  const withExtra = [1, 2];
  withExtra.extra = true;
  const deep = {};
  let d = deep;
  for (let i = 0; i < 40; i++) d = d.next = {};
  const declined = [
    'ā (not Latin-1)', { s: '😀' }, 10n, Symbol('s'), () => 1, new Date(0), new Map(), new Set(),
    /re/, Buffer.from('x'), new Uint8Array(2), new (class C {})(), Object.create(null),
    { 1: 'index key' }, { a: shared, b: shared }, cyclic, [1, , 3], withExtra, deep,
    new Error('e'), { nested: [new Date(0)] },
  ];
  for (const v of declined) assert.strictEqual(written(v), UNSUPPORTED, `declined: ${typeof v}`);
});

test('a value that does not fit before the end says so', () => {
  assert.strictEqual(written({ data: 'x'.repeat(100) }, 50), NO_ROOM);
  assert.strictEqual(written(null, 1), NO_ROOM);
  // The same value fits with room.
  assert.deepStrictEqual(written({ data: 'x'.repeat(100) }, 200), Buffer.from(v8.serialize({ data: 'x'.repeat(100) })));
});
