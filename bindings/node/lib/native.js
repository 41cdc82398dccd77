'use strict';
// The native addon (bindings/node/src; which file, and from where, is lib/loader.js's business),
// the constants shared with it, and the decoding of the event batches it sends to JS.

const { loadNative } = require('./loader');
const { nativeError } = require('./errors');

const addon = loadNative();

function callNative(fn) {
  try {
    return fn();
  } catch (e) {
    throw nativeError(e);
  }
}

// The event kinds by name and the batch layout, from the addon (bindings/node/src/events.rs),
// where they are written once.
const { kinds: EV, meta: META, head: HEAD } = addon.eventLayout();
// The same variable as the C front's (crates/corral-core/src/environ.rs).
const ENV_HEARTBEAT = 'CORRAL_HEARTBEAT_MS';

// A batch from the native side (bindings/node/src/events.rs, to_js): one ArrayBuffer with
// [event count, fd count, flags, META ints per event, fds] then the payload bytes; or an array
// [that buffer, (the payload bytes as their own buffer when flags & 1,) ...values], the
// indexes of `message` (a string, or a SUPERVISOR event's object) and `syscall`/`address`
// being positions in it.
//
// A small batch read on this thread comes in its reader's shared buffer (flags & 2), reused
// for every batch of that reader (bindings/node/src/events.rs, SharedBuffer): its views are
// made once and kept here, and its payloads (ev.data) are valid during this call only. Every
// consumer decodes them at once (lib/messages.js, which copies what v8.deserialize would
// otherwise keep a view of: isShared).
const NO_FDS = Object.freeze([]);
const SHARED = 2;
const sharedViews = new WeakMap(); // shared ArrayBuffer -> { ints, bytes }
function decodeBatch(b) {
  const arr = Array.isArray(b) ? b : null;
  const ab = arr ? b[0] : b;
  let shared = sharedViews.get(ab);
  // One view for the ints, sized from the byte length (the payload bytes follow them), and
  // one Buffer for the payload bytes, which a lone payload is (no subarray): typed arrays are
  // a visible share of a small message's cost.
  const ints = shared === undefined ? new Int32Array(ab, 0, ab.byteLength >> 2) : shared.ints;
  if (shared === undefined && ints[2] & SHARED) {
    shared = { ints, bytes: Buffer.from(ab) };
    sharedViews.set(ab, shared);
  }
  const n = ints[0];
  const fdBase = HEAD + n * META;
  const blobAt = (fdBase + ints[1]) * 4;
  if (shared !== undefined) return decodeShared(ints, n, fdBase, shared.bytes, blobAt);
  const blob = ints[2] & 1 ? Buffer.from(arr[1]) : Buffer.from(ab, blobAt);
  const values = arr;
  const out = new Array(n);
  for (let e = 0; e < n; e++) {
    const i = HEAD + e * META;
    const len = ints[i + 12];
    const off = ints[i + 11];
    const msg = ints[i + 15];
    const extra = ints[i + 16];
    out[e] = eventAt(
      ints,
      i,
      fdBase,
      len < 0 ? undefined : off === 0 && len === blob.length ? blob : blob.subarray(off, off + len),
      msg >= 0 ? values[msg] : undefined,
      extra >= 0 ? values[extra] : undefined,
    );
  }
  return out;
}

// A batch in a shared buffer: no strings or objects (the native side uses it only then), the
// payloads at blobAt + their offset.
function decodeShared(ints, n, fdBase, bytes, blobAt) {
  const out = new Array(n);
  for (let e = 0; e < n; e++) {
    const i = HEAD + e * META;
    const len = ints[i + 12];
    const at = blobAt + ints[i + 11];
    out[e] = eventAt(ints, i, fdBase, len < 0 ? undefined : bytes.subarray(at, at + len), undefined, undefined);
  }
  return out;
}

// One event of a batch: its fixed fields at ints[i..i + META) and its fds, with the payload and
// strings its decoder found (one object shape for both decoders).
function eventAt(ints, i, fdBase, data, message, extra) {
  const first = ints[i + 13];
  const nfds = ints[i + 14];
  return {
    kind: ints[i],
    worker: ints[i + 1],
    pid: ints[i + 2],
    code: ints[i + 3] === -2147483648 ? null : ints[i + 3],
    signal: ints[i + 4] || null,
    errno: ints[i + 5],
    id: ints[i + 6],
    port: ints[i + 7],
    family: ints[i + 8],
    listener: ints[i + 9],
    flag: ints[i + 10] !== 0,
    data,
    fds: nfds ? Array.from(ints.subarray(fdBase + first, fdBase + first + nfds)) : NO_FDS,
    message,
    syscall: extra,
    address: extra,
  };
}

// Whether `buf` is a view of a shared batch buffer (valid during its batch's call only).
const isShared = (buf) => sharedViews.has(buf.buffer);

const SCHED_NONE = 1;
const SCHED_RR = 2;
// corral's own: each worker accepts on its socket of a SO_REUSEPORT group and an eBPF program
// deals connections in turn (the engine's `kernel-rr`; rr where it cannot be loaded).
const SCHED_KERNEL_RR = 3;
// corral's own policies (issue 14): a client's connections to one worker; the least loaded.
const SCHED_STICKY = 4;
const SCHED_LEAST = 5;
// As SCHED_KERNEL_RR, but the eBPF program picks the worker with the fewest open connections
// (the engine's `kernel-least`; least where it cannot be loaded).
const SCHED_KERNEL_LEAST = 6;
// Set by the primary for workers under `least` (and `kernel-least`, for its fallback): report
// every dealt connection's close.
const ENV_REPORT_CLOSES = 'CORRAL_NODE_REPORT_CLOSES';
// Bits of the engine's listen options (corral_core::listener::BindOptions).
const LISTEN_IPV6_ONLY = 1;
const LISTEN_READABLE_ALL = 2;
const LISTEN_WRITABLE_ALL = 4;
const LISTEN_REUSE_ADDR = 8;
const LISTEN_MODE_EXACT = 16;
// The primary tells a worker the serialization it chose (cluster.settings.serialization).
const ENV_SERIALIZATION = 'CORRAL_NODE_SERIALIZATION';

module.exports = {
  addon,
  callNative,
  decodeBatch,
  isShared,
  EV,
  ENV_HEARTBEAT,
  ENV_SERIALIZATION,
  SCHED_NONE,
  SCHED_RR,
  SCHED_KERNEL_RR,
  SCHED_STICKY,
  SCHED_LEAST,
  SCHED_KERNEL_LEAST,
  ENV_REPORT_CLOSES,
  LISTEN_IPV6_ONLY,
  LISTEN_READABLE_ALL,
  LISTEN_WRITABLE_ALL,
  LISTEN_REUSE_ADDR,
  LISTEN_MODE_EXACT,
};
