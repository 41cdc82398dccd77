'use strict';
// Messages between the primary and its workers, as lib/internal/child_process.js and
// lib/internal/cluster/utils.js carry them: process.send / ChildProcess.send argument
// handling, the wire envelope (JSON or V8's serialization), internal NODE_* messages, and the
// handles (sockets, servers) that travel as fds.

const dgram = require('dgram');
const EventEmitter = require('events');
const fs = require('fs');
const net = require('net');
const v8 = require('v8');
const { codedError, channelClosed, invalidArgType, nativeError } = require('./errors');
const { HANDLE_TYPE, handleClass } = require('./utils');
const v8wire = require('./v8wire');

const INTERNAL_PREFIX = 'NODE_';
// Message envelope: [kind, handle type] + payload.
const MSG_JSON = 1;
const MSG_ADVANCED = 2;
const MSG_INTERNAL = 3;
const HANDLE_NONE = 0;
const HANDLE_SOCKET = 1;
const HANDLE_SERVER = 2;
// dgram.Socket, by type (Node's message carries dgramType).
const HANDLE_UDP4 = 3;
const HANDLE_UDP6 = 4;
// A socket of a net.Server, with the server's connection key (Node's message.key): the
// receiver counts it for the sender's getConnections() and close().
const HANDLE_SERVER_SOCKET = 5;
// A net.Server on a Unix socket (HANDLE_SERVER: on TCP): the receiver wraps the fd in a handle
// of the same class, as libuv types the handle it receives.
const HANDLE_SERVER_PIPE = 6;

function isInternal(message) {
  return (
    message !== null &&
    typeof message === 'object' &&
    typeof message.cmd === 'string' &&
    message.cmd.length > INTERNAL_PREFIX.length &&
    message.cmd.startsWith(INTERNAL_PREFIX)
  );
}

function checkMessage(message) {
  if (message === undefined) throw codedError(TypeError, 'ERR_MISSING_ARGS', 'The "message" argument must be specified');
  const t = typeof message;
  if (t !== 'string' && t !== 'object' && t !== 'number' && t !== 'boolean') {
    throw invalidArgType('message', 'one of type string, object, number, or boolean', message);
  }
}

// The native send copies a message only when it cannot be written at once, and never keeps
// the buffer it was given: JSON messages are encoded into one reused buffer, so a big
// message does not cost a fresh allocation (and its page faults) every time.
let scratch = Buffer.allocUnsafeSlow(64 * 1024);
const SCRATCH_MAX = 1024 * 1024; // bigger messages get a buffer of their own

// The heads of advanced messages by handle type, made once.
const ADVANCED_HEADS = Array.from({ length: HANDLE_SERVER_PIPE + 1 }, (_, type) => Buffer.from([MSG_ADVANCED, type]));

// [kind, handle type, (HANDLE_SERVER_SOCKET: key length u16le, key), body]: body is JSON text
// or V8's serialization.
function encode(kind, message, handleType, key) {
  const head = handleType === HANDLE_SERVER_SOCKET ? keyPrefix(kind, handleType, key) : null;
  if (kind === MSG_ADVANCED) {
    // A simple value: V8's bytes written by hand into the reused buffer (lib/v8wire.js),
    // grown (up to SCRATCH_MAX) while the value does not fit, as encodeText grows it.
    while (!head) {
      const end = v8wire.writeValue(scratch, 2, scratch.length, message);
      if (end >= 0) {
        scratch[0] = kind;
        scratch[1] = handleType;
        return scratch.subarray(0, end);
      }
      if (end !== v8wire.NO_ROOM || scratch.length >= SCRATCH_MAX) break;
      scratch = Buffer.allocUnsafeSlow(Math.min(SCRATCH_MAX, scratch.length * 2));
    }
    // v8.serialize() with the head written first: no copy of the serialized body.
    const ser = new v8.DefaultSerializer();
    ser.writeRawBytes(head || ADVANCED_HEADS[handleType]);
    ser.writeHeader();
    ser.writeValue(message);
    return ser.releaseBuffer();
  }
  return encodeText(kind, JSON.stringify(message), handleType, head);
}

function encodeText(kind, text, handleType, head) {
  const at = head ? head.length : 2;
  // At most 3 bytes per UTF-16 unit; count exactly only when that bound does not fit.
  let buf = scratch;
  if (text.length * 3 + at > buf.length) {
    const room = Buffer.byteLength(text) + at;
    if (room > buf.length) {
      buf = Buffer.allocUnsafeSlow(room);
      if (room <= SCRATCH_MAX) scratch = buf;
    }
  }
  const n = buf.write(text, at);
  if (head) head.copy(buf, 0);
  buf[0] = kind;
  buf[1] = handleType;
  return buf.subarray(0, n + at);
}

function keyPrefix(kind, handleType, key) {
  const k = Buffer.from(String(key));
  const head = Buffer.allocUnsafe(4 + k.length);
  head[0] = kind;
  head[1] = handleType;
  head.writeUInt16LE(k.length, 2);
  k.copy(head, 4);
  return head;
}

function decode(buf) {
  const kind = buf[0];
  const handleType = buf[1];
  let at = 2;
  let key;
  if (handleType === HANDLE_SERVER_SOCKET) {
    const len = buf.readUInt16LE(2);
    key = buf.toString('utf8', 4, 4 + len);
    at = 4 + len;
  }
  let message;
  if (kind === MSG_ADVANCED) {
    // A simple value without a Deserializer (lib/v8wire.js), else V8's.
    message = v8wire.readValue(buf, at, buf.length);
    // v8.deserialize returns typed arrays and Buffers as views of its input: a payload in a
    // shared batch buffer (lib/native.js) is copied first, as it is overwritten next batch.
    // (Required here, not at the top: this module loads without the addon.)
    if (message === v8wire.DECLINED) {
      const body = buf.subarray(at);
      message = v8.deserialize(require('./native').isShared(buf) ? Buffer.from(body) : body);
    }
  } else {
    message = JSON.parse(buf.toString('utf8', at));
  }
  return { kind, handleType, key, message };
}

// The sockets sent or received through one channel, by server key (lib/internal/socket_list.js
// and getSocketList in lib/internal/child_process.js): the sender's net.Server asks the
// receiver how many of its sockets are still open (getConnections) and waits for them to
// close (close), with the same NODE_SOCKET_* internal messages as Node's.
const socketLists = new WeakMap(); // channel target -> { send: {key: list}, got: {key: list} }
function getSocketList(type, target, key) {
  let lists = socketLists.get(target);
  if (lists === undefined) {
    lists = { send: { __proto__: null }, got: { __proto__: null } };
    socketLists.set(target, lists);
  }
  if (!lists[type][key]) lists[type][key] = type === 'send' ? new SocketListSend(target, key) : new SocketListReceive(target, key);
  return lists[type][key];
}

function trackSent(target, server, key) {
  const lists = socketLists.get(target);
  const first = !(lists && lists.send[key]);
  const list = getSocketList('send', target, key);
  if (first && typeof server._setupWorker === 'function') server._setupWorker(list);
}

class SocketListSend extends EventEmitter {
  constructor(target, key) {
    super();
    this.key = key;
    this.target = target;
    target.once('exit', () => this.emit('exit', this));
  }

  _request(msg, cmd, callback) {
    const target = this.target;
    const onclose = () => {
      target.removeListener('internalMessage', onreply);
      callback(codedError(Error, 'ERR_CHILD_CLOSED_BEFORE_REPLY', 'Child closed before reply received'));
    };
    const onreply = (reply) => {
      if (!(reply && reply.cmd === cmd && reply.key === this.key)) return;
      target.removeListener('disconnect', onclose);
      target.removeListener('internalMessage', onreply);
      callback(null, reply);
    };
    if (!target.connected) return onclose();
    target.send(msg, () => {});
    target.once('disconnect', onclose);
    target.on('internalMessage', onreply);
  }

  close(callback) {
    this._request({ cmd: 'NODE_SOCKET_NOTIFY_CLOSE', key: this.key }, 'NODE_SOCKET_ALL_CLOSED', callback);
  }

  getConnections(callback) {
    this._request({ cmd: 'NODE_SOCKET_GET_COUNT', key: this.key }, 'NODE_SOCKET_COUNT', (err, reply) => {
      if (err) return callback(err);
      callback(null, reply.count);
    });
  }
}

class SocketListReceive extends EventEmitter {
  constructor(target, key) {
    super();
    this.connections = 0;
    this.key = key;
    this.target = target;
    const onempty = () => {
      if (target.connected) target.send({ cmd: 'NODE_SOCKET_ALL_CLOSED', key }, () => {});
    };
    target.on('internalMessage', (msg) => {
      if (!msg || msg.key !== key) return;
      if (msg.cmd === 'NODE_SOCKET_NOTIFY_CLOSE') {
        if (this.connections === 0) onempty();
        else this.once('empty', onempty);
      } else if (msg.cmd === 'NODE_SOCKET_GET_COUNT') {
        if (target.connected) target.send({ cmd: 'NODE_SOCKET_COUNT', key, count: this.connections }, () => {});
      }
    });
  }

  add(socket) {
    this.connections++;
    socket.once('close', () => {
      this.connections--;
      if (this.connections === 0) this.emit('empty', this);
    });
  }
}

// A dgram.Socket keeps its libuv handle in its state, under a symbol dgram does not export
// (lib/internal/dgram.js kStateSymbol, described 'state symbol'); found on first use.
let dgramState;
function udpHandleOf(socket) {
  if (dgramState === undefined) {
    dgramState = Object.getOwnPropertySymbols(socket).find((sym) => sym.description === 'state symbol') || null;
  }
  const state = dgramState && socket[dgramState];
  return state ? state.handle : undefined;
}

// udp_wrap's UDP class (process.binding() is deprecated, see handleClass in child.js): taken
// from a socket dgram creates itself, which opens no fd until it binds.
let UDP;
function udpClass() {
  if (UDP === undefined) {
    const probe = dgram.createSocket('udp4');
    const handle = udpHandleOf(probe);
    probe.close();
    if (!handle || handle.constructor.name !== 'UDP') {
      throw new Error(`corral: cannot find dgram's UDP handle class on Node ${process.version}`);
    }
    UDP = handle.constructor;
  }
  return UDP;
}

// The handle in a socket, server or dgram socket (lib/internal/child_process.js handleConversion
// `send`): `null` when it has none any more, as a socket already sent (detached), a server
// closed, or a dgram socket closed: the message then goes out without a handle, as Node's does.
function nativeHandle(handle) {
  if (handle instanceof net.Socket || handle instanceof net.Server) return handle._handle || null;
  if (handle instanceof dgram.Socket) return udpHandleOf(handle) || null;
  return undefined;
}

// What a handle becomes on the wire: its fd and a type for the receiver; null: no handle.
function handleToFd(handle) {
  if (handle === undefined || handle === null) return null;
  const native = nativeHandle(handle);
  if (native === null) return null;
  if (native !== undefined && native.fd >= 0) {
    if (handle instanceof net.Socket && handle.server && handle.server._connectionKey !== undefined) {
      return { type: HANDLE_SERVER_SOCKET, fd: native.fd, key: handle.server._connectionKey };
    }
    if (handle instanceof net.Socket) return { type: HANDLE_SOCKET, fd: native.fd };
    if (handle instanceof net.Server) {
      return { type: native.constructor.name === 'Pipe' ? HANDLE_SERVER_PIPE : HANDLE_SERVER, fd: native.fd };
    }
    return { type: handle.type === 'udp6' ? HANDLE_UDP6 : HANDLE_UDP4, fd: native.fd };
  }
  throw codedError(TypeError, 'ERR_INVALID_HANDLE_TYPE', 'This handle type cannot be sent');
}

function nop() {}

// After a socket was sent without keepOpen, Node detaches it from the sender (handleConversion
// 'net.Socket' send): the server stops counting it, the socket object keeps no handle (writes
// fail with ERR_SOCKET_CLOSED, no 'close' unless used), an HTTP parser is released. Not a
// destroy: the receiver holds the connection, the client sees nothing. Node closes the
// sender's handle on the receiver's acknowledgement; here the channel already holds its own
// duplicate of the fd, so it closes at once.
let httpCommon;
function detachSocket(socket) {
  if (socket.server) socket.server._connections--;
  const handle = socket._handle;
  handle.onread = nop;
  socket._handle = null;
  socket.setTimeout(0);
  if (socket.parser) {
    if (httpCommon === undefined) httpCommon = require('_http_common');
    if (socket.parser instanceof httpCommon.HTTPParser) {
      httpCommon.freeParser(socket.parser, null, socket);
      if (socket._httpMessage) socket._httpMessage.detachSocket(socket);
    }
  }
  handle.close();
}

// The receiving side (handleConversion `got`): a dgram socket arrives bound (its 'listening'
// comes before the message, as Node's bind(handle, cb) emits it).
function fdToHandle(type, fd) {
  if (type === HANDLE_SOCKET || type === HANDLE_SERVER_SOCKET) return new net.Socket({ fd, readable: true, writable: true });
  if (type === HANDLE_SERVER || type === HANDLE_SERVER_PIPE) {
    // listen(handle), as Node's handleConversion 'net.Server' got: listen({ fd }) would mean the
    // primary's fd in a worker (node:cluster's listen({ fd }) does).
    const handle = new (handleClass(type === HANDLE_SERVER_PIPE))(HANDLE_TYPE.SERVER);
    const err = handle.open(fd);
    if (err) {
      fs.closeSync(fd);
      return undefined;
    }
    const server = net.createServer();
    if (type === HANDLE_SERVER) {
      server.listen(handle);
    } else {
      // net's listen() takes only a TCP handle as such; any other handle it reads as { fd },
      // the primary's fd in a worker. The handle is set first instead, then listened on, as
      // listen(handle) does for TCP.
      server._handle = handle;
      server._listen2(null, -1, -1, 511);
    }
    return server;
  }
  if (type === HANDLE_UDP4 || type === HANDLE_UDP6) {
    const handle = new (udpClass())();
    const err = handle.open(fd);
    if (err) {
      fs.closeSync(fd);
      return undefined;
    }
    const socket = dgram.createSocket(type === HANDLE_UDP6 ? 'udp6' : 'udp4');
    socket.bind(handle);
    return socket;
  }
  fs.closeSync(fd);
  return undefined;
}

// Node's process.send / ChildProcess.send argument handling, on a native send function.
// Send callbacks fire once their message is written to the socket, as Node's do (so a worker
// may exit right after one and the message still arrives), and in order.
class SendCallbacks {
  constructor() {
    this.waiting = []; // [sequence number, callback]
    this.outbox = null; // the messages of this tick not handed to the addon yet (Outbox)
  }
  // Hands the messages of this tick to the addon now: before anything else that writes to
  // the channel (an internal message sent directly, a disconnect) or ends the process.
  flush() {
    if (this.outbox !== null) this.outbox.flush();
  }
  // `r` is what the native send returned: true/0 written now; n queued as message n (-n: over
  // the high-water mark). Returns send()'s boolean.
  settle(r, callback) {
    if (r === true || r === false || r === 0) {
      this.written(Infinity); // earlier messages left before this one
      if (typeof callback === 'function') process.nextTick(callback, null);
      return r !== false;
    }
    if (typeof callback === 'function') this.waiting.push([Math.abs(r), callback]);
    return r > 0;
  }
  // Messages up to number `n` are out.
  written(n) {
    while (this.waiting.length && this.waiting[0][0] <= n) process.nextTick(this.waiting.shift()[1], null);
  }
  // The channel closed with messages still queued.
  fail() {
    for (const [, cb] of this.waiting.splice(0)) process.nextTick(cb, channelClosed());
  }
}

// Messages sent in the same tick leave together: the first goes at once, the ones after it
// reach the addon at the end of the tick in one call, as one Batch frame (one datagram, one
// syscall each side; the receiver reads them as the messages they are,
// crates/corral-core/src/ipc/proto.rs). A message with a handle and a big one go on their
// own, after what is pending (order kept); a lone pending message goes as itself. Callbacks
// fire after the write, as without batching; send() returns false while the addon's queue is
// over its high-water mark (as of the last write), as Node's does. Whatever writes to the
// channel or ends the process flushes first (SendCallbacks.flush).
const BATCH_BYTES = 60 * 1024; // a batch's payload stays within one datagram (64 KiB)
const BATCH_ALONE = 8 * 1024; // bigger messages are not copied into a batch

function isClosedError(err) {
  return ['ERR_CORRAL_NO_SUCH_WORKER', 'EPIPE', 'ECONNRESET'].includes(err.code) ||
    /closed|disconnected/.test(err.message);
}

// Turns of the event loop as far as messages go: each of the addon's event callbacks starts
// one (newTurn), and an outbox's end-of-tick write ends its own. A send in a turn that already
// sent one at once is batched; telling turns apart this way schedules nothing per message.
let turn = 0;
function newTurn() {
  turn++;
}

class Outbox {
  constructor(target, sendRaw, sendBatch, callbacks) {
    this.target = target;
    this.sendRaw = sendRaw;
    this.sendBatch = sendBatch;
    this.callbacks = callbacks;
    this.buf = Buffer.allocUnsafeSlow(BATCH_BYTES);
    this.len = 0;
    this.pending = []; // the callback of each pending message (or undefined)
    this.scheduled = false;
    this.backlogged = false;
    // The turn (see newTurn) in which a message last went to the addon at once.
    this.directTurn = -1;
    this.flushNow = () => {
      this.scheduled = false;
      this.directTurn = -1;
      this.flush();
    };
  }
  // Whether a message should go now, on its own: the first of a turn does (a lone message, as
  // in a request and its answer, waits for nothing and costs no scheduling); the ones after it
  // join a batch written at the end of the tick.
  sendsNow() {
    if (this.directTurn === turn || this.pending.length !== 0) return false;
    this.directTurn = turn;
    return true;
  }
  schedule() {
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flushNow);
    }
  }
  // Takes an encoded message (copied); false if it must go on its own.
  add(data, callback) {
    if (data.length > BATCH_ALONE) return false;
    if (this.len + 4 + data.length > BATCH_BYTES) this.flush();
    this.buf.writeUInt32LE(data.length, this.len);
    data.copy(this.buf, this.len + 4);
    this.len += 4 + data.length;
    this.added(callback);
    return true;
  }
  // Takes an advanced message without a handle, written in place when lib/v8wire.js can
  // (as encode() would: [MSG_ADVANCED, HANDLE_NONE, V8's bytes]); false if it must be encoded
  // by v8.Serializer or go on its own.
  addAdvanced(message, callback) {
    for (;;) {
      const at = this.len;
      const end = v8wire.writeValue(this.buf, at + 6, Math.min(BATCH_BYTES, at + 4 + BATCH_ALONE), message);
      if (end === v8wire.NO_ROOM && this.len !== 0) {
        this.flush();
        continue;
      }
      if (end < 0) return false;
      this.buf.writeUInt32LE(end - at - 4, at);
      this.buf[at + 4] = MSG_ADVANCED;
      this.buf[at + 5] = HANDLE_NONE;
      this.len = end;
      this.added(callback);
      return true;
    }
  }
  // Takes a JSON message without a handle as its text, encoded in place (as encode() would:
  // [kind, HANDLE_NONE, UTF-8 text]); false if it must go on its own.
  addText(kind, text, callback) {
    const most = 6 + text.length * 3; // at most 3 bytes per UTF-16 unit
    if (most > BATCH_ALONE) return false;
    if (this.len + most > BATCH_BYTES) this.flush();
    const at = this.len;
    const n = this.buf.write(text, at + 6);
    this.buf.writeUInt32LE(n + 2, at);
    this.buf[at + 4] = kind;
    this.buf[at + 5] = HANDLE_NONE;
    this.len = at + 6 + n;
    this.added(callback);
    return true;
  }
  added(callback) {
    this.pending.push(callback);
    this.schedule();
  }
  flush() {
    const n = this.pending.length;
    if (n === 0) return;
    const callbacks = this.pending;
    const len = this.len;
    this.pending = [];
    this.len = 0;
    let r;
    try {
      r = n === 1 ? this.sendRaw(this.buf.subarray(4, len), undefined) : this.sendBatch(this.buf.subarray(0, len));
    } catch (e) {
      // As a failed send() reports it, but later: to the callbacks, else as an 'error'.
      let err = nativeError(e);
      if (isClosedError(err)) err = channelClosed();
      let unreported = false;
      for (const cb of callbacks) {
        if (typeof cb === 'function') process.nextTick(cb, err);
        else unreported = true;
      }
      if (unreported) process.nextTick(() => this.target.emit('error', err));
      return;
    }
    for (const cb of callbacks) this.backlogged = !this.callbacks.settle(r, cb);
  }
}

function makeSend(target, sendRaw, serialization, callbacks = new SendCallbacks(), sendBatch = null) {
  const outbox = sendBatch ? new Outbox(target, sendRaw, sendBatch, callbacks) : null;
  callbacks.outbox = outbox;
  return function send(message, handle, options, callback) {
    if (typeof handle === 'function') {
      callback = handle;
      handle = undefined;
      options = undefined;
    } else if (typeof options === 'function') {
      callback = options;
      options = undefined;
    } else if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw invalidArgType('options', 'of type object', options);
    }
    if (!target.connected) {
      const ex = channelClosed();
      if (typeof callback === 'function') process.nextTick(callback, ex);
      else process.nextTick(() => target.emit('error', ex));
      return false;
    }
    checkMessage(message);
    const h = handleToFd(handle);
    const kind = isInternal(message) ? MSG_INTERNAL : serialization() === 'advanced' ? MSG_ADVANCED : MSG_JSON;
    let data;
    if (outbox !== null && !h && !outbox.sendsNow()) {
      if (kind === MSG_ADVANCED) {
        if (outbox.addAdvanced(message, callback)) return !outbox.backlogged;
        data = encode(kind, message, HANDLE_NONE);
        if (outbox.add(data, callback)) return !outbox.backlogged;
      } else {
        const text = JSON.stringify(message);
        if (outbox.addText(kind, text, callback)) return !outbox.backlogged;
        data = encodeText(kind, text, HANDLE_NONE, null);
      }
    } else {
      data = encode(kind, message, h ? h.type : HANDLE_NONE, h && h.key);
    }
    if (outbox !== null) outbox.flush();
    let ok;
    try {
      // No handle: no fds array at all (the addon takes undefined as none).
      ok = sendRaw(data, h ? [h.fd] : undefined);
    } catch (e) {
      let err = nativeError(e);
      // The engine already saw the channel close (the JS events are on their way): report
      // it as Node does, asynchronously, as a closed channel.
      const closed = isClosedError(err);
      if (closed) err = channelClosed();
      if (typeof callback === 'function') {
        process.nextTick(callback, err);
        return false;
      }
      if (closed) {
        process.nextTick(() => target.emit('error', err));
        return false;
      }
      throw err;
    }
    // As Node: the sender's server counts the sockets it sent through this channel (first
    // time per server key), a sent socket is detached from the sender unless keepOpen;
    // servers and dgram sockets stay open in the sender.
    if (h && h.type === HANDLE_SERVER_SOCKET) trackSent(target, handle.server, h.key);
    if (h && (h.type === HANDLE_SOCKET || h.type === HANDLE_SERVER_SOCKET) && !{ ...options }.keepOpen) {
      detachSocket(handle);
    }
    return callbacks.settle(ok, callback);
  };
}

function deliver(target, buf, fds) {
  let decoded;
  try {
    decoded = decode(buf);
  } catch (e) {
    for (const fd of fds) fs.closeSync(fd);
    target.emit('error', e);
    return;
  }
  const handle = fds.length ? fdToHandle(decoded.handleType, fds[0]) : undefined;
  if (handle && decoded.handleType === HANDLE_SERVER_SOCKET) getSocketList('got', target, decoded.key).add(handle);
  for (let i = 1; i < fds.length; i++) fs.closeSync(fds[i]);
  if (decoded.kind === MSG_INTERNAL || isInternal(decoded.message)) {
    target.emit('internalMessage', decoded.message, handle);
  } else {
    target.emit('message', decoded.message, handle);
  }
}

// A Batch frame's messages ([len u32le][bytes] each, checked by the addon), delivered in
// order while `open()` says the channel still delivers.
function deliverBatch(target, buf, open) {
  for (let at = 0; at < buf.length && open(); ) {
    const len = buf.readUInt32LE(at);
    deliver(target, buf.subarray(at + 4, at + 4 + len), []);
    at += 4 + len;
  }
}

module.exports = {
  deliverBatch,
  newTurn,
  MSG_INTERNAL,
  HANDLE_NONE,
  SendCallbacks,
  makeSend,
  deliver,
  encode,
};
