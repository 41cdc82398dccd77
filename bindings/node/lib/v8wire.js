'use strict';
// The 'advanced' serialization of simple messages without v8.Serializer: the bytes
// v8.serialize() writes for the same value (V8's ValueSerializer wire format), written straight
// into the caller's buffer. A Serializer per message (an API object, its buffer released as an
// ArrayBuffer with a finalizer, then copied) was most of a worker's cost per small message when
// it streams. The receiver still reads them with v8.deserialize().
//
// Only what is written exactly as V8 would: plain objects (Object.prototype, no integer-like
// keys), dense arrays without holes, strings of Latin-1 characters, int32 numbers (as V8's Smis)
// and other numbers (as doubles; -0 too), booleans, null, undefined; each object at most once
// (V8 writes a second occurrence as a back-reference) and at most MAX_DEPTH deep. Anything else
// returns UNSUPPORTED and the caller uses v8.Serializer. test/v8wire.test.js compares the bytes
// with v8.serialize()'s, and readValue() below reads them back without v8.Deserializer. Property values are read as V8 reads them (getters run); a value
// found unsupported half-way is then serialized again by v8.Serializer.

const v8 = require('v8');

// The header (0xFF, the format version) as this Node's V8 writes it.
const HEADER = Buffer.from(v8.serialize(null)).subarray(0, 2);

const UNSUPPORTED = -1; // a value this writer does not write
const NO_ROOM = -2; // the value does not fit before `end`
const MAX_DEPTH = 16;

// ValueSerializer's tags (v8/src/objects/value-serializer.cc).
const TAG_NULL = 0x30; // '0'
const TAG_UNDEFINED = 0x5f; // '_'
const TAG_TRUE = 0x54; // 'T'
const TAG_FALSE = 0x46; // 'F'
const TAG_INT32 = 0x49; // 'I', zigzag varint
const TAG_DOUBLE = 0x4e; // 'N', 8 bytes little-endian
const TAG_ONE_BYTE_STRING = 0x22; // '"', varint length, Latin-1 bytes
const TAG_BEGIN_OBJECT = 0x6f; // 'o'
const TAG_END_OBJECT = 0x7b; // '{', varint property count
const TAG_BEGIN_DENSE_ARRAY = 0x41; // 'A', varint length
const TAG_END_DENSE_ARRAY = 0x24; // '$', varint property count (0), varint length

// eslint-disable-next-line no-control-regex
const NOT_LATIN1 = /[^\u0000-\u00ff]/;
const INDEX_LIKE = /^(?:0|[1-9]\d*)$/;

class Writer {
  constructor() {
    this.buf = null;
    this.at = 0;
    this.end = 0;
    this.seen = [];
    this.f64 = new Float64Array(1);
    this.f64bytes = new Uint8Array(this.f64.buffer);
  }

  room(n) {
    if (this.at + n > this.end) throw NO_ROOM;
  }

  varint(v) {
    // Non-negative, below 2^32.
    do {
      this.room(1);
      let b = v & 0x7f;
      v = Math.floor(v / 128);
      if (v !== 0) b |= 0x80;
      this.buf[this.at++] = b;
    } while (v !== 0);
  }

  string(s) {
    if (NOT_LATIN1.test(s)) throw UNSUPPORTED;
    this.room(1);
    this.buf[this.at++] = TAG_ONE_BYTE_STRING;
    this.varint(s.length);
    this.room(s.length);
    this.at += this.buf.write(s, this.at, s.length, 'latin1');
  }

  value(v, depth) {
    switch (typeof v) {
      case 'string':
        return this.string(v);
      case 'number':
        if ((v | 0) === v && !Object.is(v, -0)) {
          this.room(1);
          this.buf[this.at++] = TAG_INT32;
          return this.varint(v >= 0 ? v * 2 : -v * 2 - 1);
        }
        this.room(9);
        this.buf[this.at++] = TAG_DOUBLE;
        this.f64[0] = v;
        this.buf.set(this.f64bytes, this.at);
        this.at += 8;
        return;
      case 'boolean':
        this.room(1);
        this.buf[this.at++] = v ? TAG_TRUE : TAG_FALSE;
        return;
      case 'undefined':
        this.room(1);
        this.buf[this.at++] = TAG_UNDEFINED;
        return;
      case 'object':
        if (v === null) {
          this.room(1);
          this.buf[this.at++] = TAG_NULL;
          return;
        }
        return this.object(v, depth);
      default:
        throw UNSUPPORTED;
    }
  }

  object(o, depth) {
    if (depth >= MAX_DEPTH || this.seen.includes(o)) throw UNSUPPORTED;
    this.seen.push(o);
    if (Array.isArray(o)) {
      if (Object.getPrototypeOf(o) !== Array.prototype) throw UNSUPPORTED;
      const n = o.length;
      // Own properties besides the indexes (V8 writes them after the elements).
      if (Object.keys(o).length !== n) throw UNSUPPORTED;
      this.room(1);
      this.buf[this.at++] = TAG_BEGIN_DENSE_ARRAY;
      this.varint(n);
      for (let i = 0; i < n; i++) {
        if (!(i in o)) throw UNSUPPORTED;
        this.value(o[i], depth + 1);
      }
      this.room(1);
      this.buf[this.at++] = TAG_END_DENSE_ARRAY;
      this.varint(0);
      this.varint(n);
      return;
    }
    if (Object.getPrototypeOf(o) !== Object.prototype) throw UNSUPPORTED;
    const keys = Object.keys(o);
    this.room(1);
    this.buf[this.at++] = TAG_BEGIN_OBJECT;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i];
      // V8 writes integer-like keys as numbers, first.
      if (INDEX_LIKE.test(k)) throw UNSUPPORTED;
      this.string(k);
      this.value(o[k], depth + 1);
    }
    this.room(1);
    this.buf[this.at++] = TAG_END_OBJECT;
    this.varint(keys.length);
  }
}

const writer = new Writer();

// Writes V8's serialization of `value` (header included) into `buf` from `at`, not past `end`.
// Returns where it ended, UNSUPPORTED or NO_ROOM (nothing useful is written then).
function writeValue(buf, at, end, value) {
  if (at + HEADER.length > end) return NO_ROOM;
  HEADER.copy(buf, at);
  writer.buf = buf;
  writer.at = at + HEADER.length;
  writer.end = end;
  try {
    writer.value(value, 0);
    return writer.at;
  } catch (e) {
    if (e === UNSUPPORTED || e === NO_ROOM) return e;
    throw e;
  } finally {
    writer.buf = null;
    writer.seen.length = 0;
  }
}

// The reading side: v8.deserialize() of the same subset, where a Deserializer per message
// (an API object) was most of the receiver's cost. Anything else in the bytes (a
// back-reference, a two-byte string, a Date, a host object, another format version...) is
// declined before anything is returned, and the caller uses v8.deserialize().
const DECLINED = Symbol('v8wire.declined');
const TAG_END_PADDING = 0x00;

class Reader {
  constructor() {
    this.buf = null;
    this.at = 0;
    this.end = 0;
  }

  byte() {
    if (this.at >= this.end) throw DECLINED;
    return this.buf[this.at++];
  }

  varint() {
    let v = 0;
    let scale = 1;
    for (;;) {
      const b = this.byte();
      v += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return v;
      scale *= 128;
      if (scale > 2 ** 35) throw DECLINED;
    }
  }

  string() {
    const n = this.varint();
    if (this.at + n > this.end) throw DECLINED;
    const s = this.buf.toString('latin1', this.at, this.at + n);
    this.at += n;
    return s;
  }

  value(depth) {
    if (depth > MAX_DEPTH) throw DECLINED;
    const tag = this.byte();
    switch (tag) {
      case TAG_NULL:
        return null;
      case TAG_UNDEFINED:
        return undefined;
      case TAG_TRUE:
        return true;
      case TAG_FALSE:
        return false;
      case TAG_INT32: {
        const z = this.varint();
        if (z > 0xffffffff) throw DECLINED;
        return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
      }
      case TAG_DOUBLE: {
        if (this.at + 8 > this.end) throw DECLINED;
        const v = this.buf.readDoubleLE(this.at);
        this.at += 8;
        return v;
      }
      case TAG_ONE_BYTE_STRING:
        return this.string();
      case TAG_BEGIN_OBJECT: {
        const o = {};
        let count = 0;
        for (;;) {
          const t = this.byte();
          if (t === TAG_END_OBJECT) {
            if (this.varint() !== count) throw DECLINED;
            return o;
          }
          // Keys this writer writes: strings that are not integer-like, not __proto__ (which
          // V8 defines as an own property and an assignment would not).
          if (t !== TAG_ONE_BYTE_STRING) throw DECLINED;
          const k = this.string();
          if (k === '__proto__' || INDEX_LIKE.test(k)) throw DECLINED;
          o[k] = this.value(depth + 1);
          count++;
        }
      }
      case TAG_BEGIN_DENSE_ARRAY: {
        const n = this.varint();
        // Each element takes a byte at least.
        if (n > this.end - this.at) throw DECLINED;
        const a = new Array(n);
        for (let i = 0; i < n; i++) a[i] = this.value(depth + 1);
        if (this.byte() !== TAG_END_DENSE_ARRAY || this.varint() !== 0 || this.varint() !== n) throw DECLINED;
        return a;
      }
      case TAG_END_PADDING:
      default:
        throw DECLINED;
    }
  }
}

const reader = new Reader();

// The value V8 serialized in buf[at, end) (header included), or DECLINED.
function readValue(buf, at, end) {
  if (end - at < HEADER.length + 1 || buf[at] !== HEADER[0] || buf[at + 1] !== HEADER[1]) return DECLINED;
  reader.buf = buf;
  reader.at = at + HEADER.length;
  reader.end = end;
  try {
    const v = reader.value(0);
    return reader.at === end ? v : DECLINED;
  } catch (e) {
    if (e === DECLINED) return DECLINED;
    throw e;
  } finally {
    reader.buf = null;
  }
}

module.exports = { writeValue, readValue, UNSUPPORTED, NO_ROOM, DECLINED };
