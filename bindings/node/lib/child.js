'use strict';
// The worker side of require('corral'), as lib/internal/cluster/child.js: cluster.worker,
// process.send / process.channel / process.disconnect on corral's channel, and net.Server's
// listen going through the primary. Round-robin connections arrive as fds on the channel, read
// on this event loop (bindings/node/src/uvpoll.rs), and enter net.Server through its own
// onconnection path (so getConnections, maxConnections, timeouts and keep-alive behave);
// shared mode hands the worker the listening socket itself. dgram's bind() (not exclusive)
// goes through the primary too: every worker asking gets the same UDP socket, whatever the
// policy. listen({ fd }) and bind({ fd }) name the primary's fd N, as in node:cluster.

const dgram = require('dgram');
const EventEmitter = require('events');
const fs = require('fs');
const net = require('net');
const path = require('path');
const util = require('util');
const Worker = require('./worker');
const { codedError, channelClosed, ipcDisconnected, nativeError, systemError } = require('./errors');
const { MSG_INTERNAL, HANDLE_NONE, SendCallbacks, makeSend, deliver, deliverBatch, encode, newTurn } = require('./messages');
const { KeepAlive, HANDLE_TYPE, handleClass } = require('./utils');
const {
  addon, callNative, decodeBatch, EV, ENV_HEARTBEAT, ENV_SERIALIZATION, SCHED_NONE, SCHED_RR, SCHED_KERNEL_RR,
  LISTEN_IPV6_ONLY, LISTEN_READABLE_ALL, LISTEN_WRITABLE_ALL, LISTEN_REUSE_ADDR, LISTEN_MODE_EXACT,
  SCHED_STICKY, SCHED_LEAST, SCHED_KERNEL_LEAST, ENV_REPORT_CLOSES,
} = require('./native');

const cluster = new EventEmitter();
module.exports = cluster;
cluster.isWorker = true;
cluster.isMaster = false;
cluster.isPrimary = false;
cluster.Worker = Worker;
cluster.SCHED_NONE = SCHED_NONE;
cluster.SCHED_RR = SCHED_RR;
cluster.SCHED_KERNEL_RR = SCHED_KERNEL_RR;
cluster.SCHED_STICKY = SCHED_STICKY;
cluster.SCHED_LEAST = SCHED_LEAST;
cluster.SCHED_KERNEL_LEAST = SCHED_KERNEL_LEAST;
cluster.worker = null;

// libuv's UV_TCP_IPV6ONLY (uv.h), which net.js passes to _listen2 in `flags` for ipv6Only.
const UV_TCP_IPV6ONLY = 1;

const serialization = process.env[ENV_SERIALIZATION] === 'advanced' ? 'advanced' : 'json';
delete process.env[ENV_SERIALIZATION];
// Under `least` the primary counts this worker's open connections by these reports.
const reportCloses = process.env[ENV_REPORT_CLOSES] === '1';
delete process.env[ENV_REPORT_CLOSES];

const keepAlive = new KeepAlive();
const pending = new Map(); // listen request id -> callback(event)
const servers = new Map(); // listener id -> fake or real handle (rr: fake)
const handles = new Set(); // handles to close on disconnect
const indexes = new Map();
let nextReq = 1;
let closing = false;

// Once per connection on a load-aware listener: a function of the addon, not a method of nw.
const workerAccepted = addon.workerAccepted;
const nw = callNative(() => new addon.NativeWorker((b) => {
  newTurn();
  onEvents(decodeBatch(b));
}));
const listeningServers = new Set();
const heartbeatMs = nw.heartbeatMs; // read by the engine with the other worker variables
delete process.env[ENV_HEARTBEAT];
if (heartbeatMs > 0) {
  // Sent from the event loop: a blocked loop stops the beats and the watchdog notices.
  setInterval(() => {
    if (!connected) return;
    let active = 0;
    for (const srv of listeningServers) active += srv._connections || 0;
    try {
      nw.heartbeat(active);
    } catch {
      // Channel closing: the disconnect path takes over.
    }
  }, heartbeatMs).unref();
}
const worker = new Worker({ id: nw.id, process, state: 'online' });
cluster.worker = worker;
keepAlive.set(true);

let connected = true;
Object.defineProperty(process, 'connected', {
  configurable: true,
  enumerable: true,
  get: () => connected,
});
// process.channel, as Node's Control (lib/internal/child_process.js): while the channel is
// open it keeps the worker alive unless unref()'d; null from the disconnect on.
class Control extends EventEmitter {
  ref() {
    if (connected) keepAlive.set(true);
  }
  unref() {
    keepAlive.set(false);
  }
  get fd() {
    return nw.fd;
  }
}
process.channel = new Control();
Object.defineProperty(process, '_channel', {
  configurable: true,
  enumerable: false,
  get: util.deprecate(() => process.channel, '_channel is deprecated. Use ChildProcess.channel instead.', 'DEP0129'),
  set: util.deprecate((v) => {
    process.channel = v;
  }, '_channel is deprecated. Use ChildProcess.channel instead.', 'DEP0129'),
});
const sendCallbacks = new SendCallbacks();
process.send = makeSend(process, (data, fds) => nw.send(data, fds), () => serialization, sendCallbacks,
  (batch) => nw.sendBatch(batch));
// Messages of this tick still waiting for its end are written before the process exits
// (process.exit() right after process.send(): Node has written the message by then).
process.on('exit', () => {
  if (connected) sendCallbacks.flush();
});
process.disconnect = function disconnect() {
  if (!connected) {
    process.emit('error', ipcDisconnected());
    return;
  }
  sendCallbacks.flush();
  closing = true;
  connected = false;
  process.channel = null;
  try {
    nw.disconnect();
    sendCallbacks.written(Infinity); // the goodbye went out after every queued message
  } catch (e) {
    sendCallbacks.fail();
    throw e;
  } finally {
    keepAlive.set(false);
    process.nextTick(() => process.emit('disconnect'));
  }
};

process.once('disconnect', () => {
  worker.emit('disconnect');
  if (!worker.exitedAfterDisconnect) {
    // The primary is gone or cut us off: exit at once, as node:cluster does.
    process.exit(0);
  }
});
// Acknowledgements from the primary ({ ack: seq }), as node:cluster's internal messages
// carry them.
const acks = new Map(); // seq -> callback
let nextSeq = 0;
process.on('internalMessage', (message) => {
  if (message === null || typeof message !== 'object' || message.cmd !== 'NODE_CLUSTER') return;
  const cb = acks.get(message.ack);
  if (cb === undefined) return;
  acks.delete(message.ack);
  cb(message);
});

function sendInternal(message, onAck) {
  if (!connected) return;
  const m = { cmd: 'NODE_CLUSTER', ...message };
  if (onAck) {
    m.seq = nextSeq++;
    acks.set(m.seq, onAck);
  }
  sendCallbacks.flush();
  nw.send(encode(MSG_INTERNAL, m, HANDLE_NONE), []);
}

// The worker's own disconnect: the primary learns exitedAfterDisconnect first, and the
// channel closes once it acknowledged (node:cluster's round trip), so the primary never
// sees an unexplained disconnect and 'disconnect' comes after what the caller queued with
// process.nextTick() and setImmediate(). The close waits for the check phase of the turn
// the acknowledgement arrived in: the receive thread (CORRAL_NODE_RECV=thread) can hand
// it over within the same callback as the message the call was made from, which Node's
// channel never does.
function disconnectAfterAck() {
  sendInternal({ act: 'exitedAfterDisconnect' }, () => {
    setImmediate(() => {
      if (connected) process.disconnect();
    });
  });
}

Worker.prototype.disconnect = function disconnect() {
  if (this.state !== 'disconnecting' && this.state !== 'destroying') {
    this.state = 'disconnecting';
    workerDisconnect.call(this, false);
  }
  return this;
};

Worker.prototype.destroy = function destroy() {
  if (this.state === 'destroying') return;
  this.exitedAfterDisconnect = true;
  if (!this.isConnected()) {
    process.exit(0);
  } else {
    this.state = 'destroying';
    disconnectAfterAck();
    process.once('disconnect', () => process.exit(0));
  }
};

function workerDisconnect(primaryInitiated) {
  this.exitedAfterDisconnect = true;
  let waitingCount = 1;
  function checkWaitingCount() {
    waitingCount--;
    if (waitingCount === 0) {
      if (primaryInitiated) {
        if (connected) process.disconnect();
        return;
      }
      // What the worker sends until the primary's acknowledgement is still delivered; after
      // the 'disconnect' event, sends fail with ERR_IPC_CHANNEL_CLOSED.
      disconnectAfterAck();
    }
  }
  for (const handle of handles) {
    waitingCount++;
    const owner = handle[ownerSymbol(handle)];
    if (owner && typeof owner.close === 'function') {
      if (typeof handle.stopDealing === 'function') handle.stopDealing();
      whenUnreadConnectionsRead(owner, () => owner.close(checkWaitingCount));
    } else {
      handle.close(checkWaitingCount);
    }
  }
  handles.clear();
  checkWaitingCount();
}

// An http(s) server's close() destroys its idle connections (closeIdleConnections), and from
// Node 26 on a connection whose first request has not been read yet counts as idle (20-24 leave
// it open). The primary hands a worker a connection as soon as it accepts it, and the disconnect
// request can follow in the same batch or before the client's request bytes arrive: closing at
// once would reset a client whose request the worker already owns (a rolling restart lost 1-3
// of 300 requests on Node 26). So the disconnect closes such a server only once each of its
// connections has read its first bytes (the parser then holds a request, which close() leaves
// alone) or closed, for UNREAD_GRACE_MS at most: past that the connection is really idle, and
// close() destroys it as Node does. The primary deals no new connections meanwhile (it stopped
// when it asked for the disconnect; a worker's own disconnect stops it first, stopDealing).
const UNREAD_GRACE_MS = 1000;
const UNREAD_POLL_MS = 2;
let connectionsSym;
function whenUnreadConnectionsRead(server, then) {
  if (typeof server.closeIdleConnections !== 'function') return then();
  // Set on the server when it starts listening (setupConnectionsTracking).
  connectionsSym ||= Object.getOwnPropertySymbols(server)
    .find((s) => s.description === 'http.server.connections');
  const list = connectionsSym && server[connectionsSym];
  if (!list || typeof list.all !== 'function') return then();
  const unread = () => list.all().filter((p) => p.socket && !p.socket.destroyed && p.socket.bytesRead === 0);
  if (unread().length === 0) return then();
  const deadline = Date.now() + UNREAD_GRACE_MS;
  const check = () => {
    if (unread().length === 0 || Date.now() >= deadline) then();
    else setTimeout(check, UNREAD_POLL_MS);
  };
  setTimeout(check, UNREAD_POLL_MS);
}

// net.Server keeps its owner under a symbol named 'owner_symbol'.
let ownerSym;
function ownerSymbol(handle) {
  if (ownerSym) return ownerSym;
  ownerSym = Object.getOwnPropertySymbols(handle).find((s) => s.description === 'owner_symbol');
  return ownerSym;
}

// ---- listening through the primary

const kExclusive = Symbol('corral.exclusive');
// readableAll/writableAll: net.Server.listen passes them to node:cluster's request, not to
// _listen2, and chmods only a handle it already has (never a worker's): kept for the request.
// The file's mode then is what this Node's libuv makes it: from libuv 1.51 (Node 22.23, 24,
// 26) uv_pipe_chmod sets exactly 0o444/0o222/0o666, before it added those bits to the mode.
const kPipeMode = Symbol('corral.pipeMode');
const [uvMajor, uvMinor] = process.versions.uv.split('.').map(Number);
const PIPE_MODE_EXACT = uvMajor > 1 || (uvMajor === 1 && uvMinor >= 51) ? LISTEN_MODE_EXACT : 0;
const origListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listen(...args) {
  const o = args[0];
  const isObject = o !== null && typeof o === 'object';
  // The options object, read when _listen2 runs: Node 22.12+ sets exclusive on it for reusePort.
  this[kExclusive] = isObject ? o : null;
  const all = (isObject && o.readableAll === true ? LISTEN_READABLE_ALL : 0) |
    (isObject && o.writableAll === true ? LISTEN_WRITABLE_ALL : 0);
  this[kPipeMode] = all ? all | PIPE_MODE_EXACT : 0;
  return origListen.apply(this, args);
};

const origListen2 = net.Server.prototype._listen2;
net.Server.prototype._listen2 = function _listen2(address, port, addressType, backlog, fd, flags) {
  // listen({ fd }) is the primary's fd, exclusive or not (net.js passes no exclusive for it).
  const viaFd = typeof fd === 'number' && fd >= 0;
  if (this._handle || (!viaFd && this[kExclusive] && this[kExclusive].exclusive) || !connected) {
    return origListen2.apply(this, arguments);
  }
  const server = this;
  const args = arguments;
  let isPipe = port < 0 && typeof address === 'string';
  const resolved = isPipe ? path.resolve(address) : address;
  const indexesKey = [resolved, port, addressType, fd].join(':');
  let indexSet = indexes.get(indexesKey);
  if (indexSet === undefined) {
    indexSet = { nextIndex: 0, set: new Set() };
    indexes.set(indexesKey, indexSet);
  }
  const index = indexSet.nextIndex++;
  indexSet.set.add(index);
  // As node:cluster's removeIndexesKey: once every server of this address closed, the next
  // listen is index 0 again, and so the same listener in the primary (under kernel-rr a
  // second index of a fixed port is EADDRINUSE, as under rr).
  const freeIndex = () => {
    indexSet.set.delete(index);
    if (indexSet.set.size === 0 && indexes.get(indexesKey) === indexSet) indexes.delete(indexesKey);
  };
  const host = resolved === null || resolved === undefined ? '' : String(resolved);
  const wire = viaFd ? `fd:${fd}` : isPipe ? `unix:${host}` : hostPort(host, port);
  const req = nextReq++;
  pending.set(req, (ev) => {
    if (ev.kind === EV.LISTEN_ERR) {
      freeIndex();
      // Refused by the primary for another reason than an OS error (an option it checks, this
      // worker disconnecting): the engine's error, with its ERR_CORRAL_* code (and option).
      if (ev.message instanceof Error) {
        server.emit('error', nativeError(ev.message));
        return;
      }
      const code = viaFd ? fdErrno(ev) : ev.errno > 0 ? ev.errno : ev.syscall === 'getaddrinfo' ? 'ENOTFOUND' : 'EINVAL';
      server.emit('error', systemError('bind', code, address, port));
      return;
    }
    // An fd of the primary: a Unix socket when the primary found no IP address on it.
    if (viaFd) isPipe = ev.family === -1;
    const lid = ev.listener;
    const sockname = isPipe ? undefined : { address: ev.address, family: ev.family === 6 ? 'IPv6' : 'IPv4', port: ev.port };
    // Tells the primary to deal no more connections here; those it already sent still reach
    // the server until unlisten() below.
    let dealing = true;
    const stopDealing = () => {
      if (!dealing) return;
      dealing = false;
      if (connected) {
        try {
          nw.unlisten(lid);
        } catch {
          // The channel just closed: nothing to stop.
        }
      }
    };
    const unlisten = () => {
      if (!servers.has(lid)) return;
      servers.delete(lid);
      handles.delete(handle);
      freeIndex();
      stopDealing();
    };
    let handle;
    if (ev.fds.length) {
      // shared: a real listening socket; libuv accepts on it.
      handle = new (handleClass(isPipe))(HANDLE_TYPE.SERVER);
      const err = handle.open(ev.fds[0]);
      if (err) {
        fs.closeSync(ev.fds[0]);
        server.emit('error', systemError('open', -err));
        return;
      }
      const close = handle.close;
      handle.close = function () {
        unlisten();
        return close.apply(handle, arguments);
      };
      // kernel-least / kernel-rr: this worker's own socket of the group, and every connection
      // accepted on it counts in the kernel until it is taken (kernel-rr) or closed
      // (kernel-least).
      if (nw.loadAware(lid)) releaseLoad(server, handle, lid);
    } else {
      // round-robin: a stand-in handle; connections come from the primary.
      let refTimer = null;
      handle = {
        listen: () => 0,
        ref() {
          if (!refTimer) refTimer = setInterval(() => {}, 2 ** 30);
        },
        unref() {
          if (refTimer) clearInterval(refTimer);
          refTimer = null;
        },
        close(cb) {
          this.unref();
          unlisten();
          if (typeof cb === 'function') process.nextTick(cb);
        },
      };
      handle.stopDealing = stopDealing;
      if (sockname) handle.getsockname = (out) => Object.assign(out, sockname) && 0;
      handle.ref();
      handle.isPipe = isPipe;
    }
    servers.set(lid, handle);
    handles.add(handle);
    listeningServers.add(server);
    server.once('close', () => listeningServers.delete(server));
    server._handle = handle;
    server.once('listening', () => {
      // Short-lived servers (closed by the caller's own listen callback, which runs first: the
      // "find a free port" idiom) may be gone already: as node:cluster's child, the primary
      // then hears nothing and the state stays, unless another server of the key is open.
      if (!indexes.has(indexesKey)) return;
      worker.state = 'listening';
      const a = server.address();
      sendInternal({
        act: 'listening',
        // Pipes: the absolute path, as node:cluster's worker resolves it before asking.
        address: resolved === undefined ? null : resolved,
        port: (a && a.port) || port,
        addressType,
        fd,
        index,
      });
    });
    origListen2.apply(server, args);
  });
  // As node:cluster, the options are not part of the key: the first listen binds with its own.
  const options = (flags & UV_TCP_IPV6ONLY ? LISTEN_IPV6_ONLY : 0) | (isPipe ? server[kPipeMode] : 0);
  const listen = () => {
    try {
      nw.listen(req, wire, backlog || 511, index, options);
    } catch (e) {
      pending.delete(req);
      process.nextTick(() => server.emit('error', nativeError(e)));
    }
  };
  // A server with data of its own to share (tls.Server: its session ticket keys), as
  // node:cluster's queryServer carries it: the primary keeps the first worker's data for the
  // listen key and gives it to every worker listening on that key, so a ticket one worker
  // issued resumes the session on any other. One round trip more, for such servers only.
  if (typeof server._getServerData === 'function' && typeof server._setServerData === 'function') {
    const key = [resolved, port, addressType, fd, index].join(':');
    sendInternal({ act: 'serverData', key, data: server._getServerData() }, (reply) => {
      if (reply.data !== undefined && reply.data !== null) server._setServerData(reply.data);
      listen();
    });
    return;
  }
  listen();
};

// Wraps the listening handle's onconnection (set by net.Server's listen, synchronously) so
// that each accepted connection is released once: under kernel-rr at once (workerAccepted: its
// window counts connections handed to this worker and not taken yet, so held keep-alive
// connections never fill it), under kernel-least (workerAccepted is false) once its socket
// closes (nw.closed), or at once when the server drops it (maxConnections) or no socket
// takes it.
function releaseLoad(server, handle, lid) {
  const release = () => {
    try {
      if (connected) nw.closed(lid);
    } catch {
      // The channel just closed: nobody counts any more.
    }
  };
  server.once('listening', () => {
    const onconnection = handle.onconnection;
    if (typeof onconnection !== 'function') return;
    handle.onconnection = function (err, clientHandle) {
      if (!err && clientHandle && connected) {
        try {
          if (workerAccepted(lid)) return onconnection.call(this, err, clientHandle);
        } catch {
          // The channel just closed: nobody counts any more.
        }
      }
      const r = onconnection.call(this, err, clientHandle);
      if (err || !clientHandle) return r;
      const socket = clientHandle[ownerSymbol(clientHandle)];
      if (socket && typeof socket.once === 'function' && !socket.destroyed) socket.once('close', release);
      else release();
      return r;
    };
  });
}

function hostPort(host, port) {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

// node:cluster's primary answers EINVAL for every fd it cannot use (its createHandle throws
// ERR_INVALID_FD_TYPE for a closed fd, a file, or a socket of the wrong kind); corral's engine
// tells EBADF, ENOTSOCK and EPROTOTYPE apart (its message says which), the worker sees Node's.
const FD_UNUSABLE = new Set(['EBADF', 'ENOTSOCK', 'EPROTOTYPE']);
function fdErrno(ev) {
  if (!(ev.errno > 0)) return 'EINVAL';
  return FD_UNUSABLE.has(util.getSystemErrorName(-ev.errno)) ? 'EINVAL' : ev.errno;
}

// ---- dgram: bind() through the primary (node:cluster's bindServerHandle)

// dgram.js keeps a socket's state (its handle, its bind state) under Symbol('state symbol').
const BIND_STATE_UNBOUND = 0;
const BIND_STATE_BINDING = 1;
let dgramStateSym;
function dgramState(socket) {
  if (!dgramStateSym) {
    dgramStateSym = Object.getOwnPropertySymbols(socket).find((s) => s.description === 'state symbol');
  }
  return dgramStateSym && socket[dgramStateSym];
}

const origBind = dgram.Socket.prototype.bind;
dgram.Socket.prototype.bind = function bind(port_, address_ /* , callback */) {
  const o = port_;
  const isObject = o !== null && typeof o === 'object';
  const state = dgramState(this);
  // What dgram does itself: a handle from cluster, exclusive binds, errors thrown at once
  // (closed socket, bound already), and everything once the channel is gone.
  if (!connected || !state || !state.handle || state.bindState !== BIND_STATE_UNBOUND ||
      (isObject && (typeof o.recvStart === 'function' || o.exclusive))) {
    return origBind.apply(this, arguments);
  }
  const socket = this;
  const cb = arguments.length && arguments[arguments.length - 1];
  const viaFd = isObject && Number.isInteger(o.fd) && o.fd > 0 && o.fd <= 0x7fffffff;
  state.bindState = BIND_STATE_BINDING;
  if (typeof cb === 'function') {
    // As dgram: the callback is a 'listening' listener, dropped on the first 'error' (which it
    // also handles, so a failed bind with a callback throws nothing).
    const removeListeners = function removeListeners() {
      this.removeListener('error', removeListeners);
      this.removeListener('listening', onListening);
    };
    const onListening = function onListening() {
      removeListeners.call(this);
      cb.call(this);
    };
    this.on('error', removeListeners);
    this.on('listening', onListening);
  }
  const fail = (err) => {
    state.bindState = BIND_STATE_UNBOUND;
    socket.emit('error', err);
  };
  const ask = (ip, port) => {
    // Node's key for the listen index: address, port, addressType, fd.
    const indexesKey = [ip, port, socket.type, viaFd ? o.fd : -1].join(':');
    let indexSet = indexes.get(indexesKey);
    if (indexSet === undefined) {
      indexSet = { nextIndex: 0, set: new Set() };
      indexes.set(indexesKey, indexSet);
    }
    const index = indexSet.nextIndex++;
    indexSet.set.add(index);
    const req = nextReq++;
    pending.set(req, (ev) => {
      if (!state.handle) {
        // Closed meanwhile (dgram drops the answer too): leave the listener at once.
        for (const fd of ev.fds) fs.closeSync(fd);
        indexSet.set.delete(index);
        if (ev.kind === EV.LISTEN_OK) {
          try {
            nw.unlisten(ev.listener);
          } catch {
            // The channel just closed: the primary dropped this worker's listeners.
          }
        }
        return;
      }
      if (ev.kind === EV.LISTEN_ERR) {
        indexSet.set.delete(index);
        if (ev.message instanceof Error) return fail(nativeError(ev.message));
        if (viaFd) return fail(systemError('open', fdErrno(ev)));
        const code = ev.errno > 0 ? ev.errno : ev.syscall === 'getaddrinfo' ? 'ENOTFOUND' : 'EINVAL';
        return fail(systemError('bind', code, ip, port));
      }
      onDatagramListening(socket, state, ev, indexSet, index, {
        address: viaFd ? null : ip,
        port: viaFd ? null : port,
        addressType: socket.type,
        fd: viaFd ? o.fd : -1,
      });
    });
    const wire = viaFd ? `fd:${o.fd}` : hostPort(ip, port || 0);
    // As node:cluster's query flags (UV_UDP_IPV6ONLY, UV_UDP_REUSEADDR): the first bind's.
    const options = (state.ipv6Only ? LISTEN_IPV6_ONLY : 0) | (state.reuseAddr ? LISTEN_REUSE_ADDR : 0);
    try {
      nw.listen(req, wire, 0, index, options, true);
    } catch (e) {
      pending.delete(req);
      indexSet.set.delete(index);
      process.nextTick(() => fail(nativeError(e)));
    }
  };
  if (viaFd) {
    ask(null, null);
    return this;
  }
  let port = port_;
  let address;
  if (isObject) {
    address = o.address || '';
    port = o.port;
  } else {
    address = typeof address_ === 'function' ? '' : address_;
  }
  // bind(cb) and bind(): port 0 (node:cluster's query drops a function as JSON does).
  port = typeof port === 'function' || port === undefined || port === null ? 0 : Number(port) || 0;
  if (!address) address = this.type === 'udp4' ? '0.0.0.0' : '::';
  // The socket's own lookup: dns for its family, as dgram resolves before asking.
  state.handle.lookup(address, (err, ip) => {
    if (!state.handle) return;
    if (err) return fail(err);
    ask(ip, port);
  });
  return this;
};

// The primary's answer to a datagram bind: the socket takes the shared fd (dgram's own fd
// path, which starts receiving and emits 'listening' at once); closing it tells the primary.
function onDatagramListening(socket, state, ev, indexSet, index, query) {
  const lid = ev.listener;
  const fd = ev.fds[0];
  const handle = state.handle;
  let opened = false;
  const onListening = () => {
    // Short-lived sockets may be closed already (by the caller's bind callback), as
    // node:cluster's child checks: then the primary hears nothing.
    if (!opened || !handles.has(handle)) return;
    worker.state = 'listening';
    const a = socket.address();
    sendInternal({
      act: 'listening',
      address: query.address,
      port: (a && a.port) || query.port,
      addressType: query.addressType,
      fd: query.fd,
      index,
    });
  };
  // After the caller's own 'listening' listeners (its bind callback), as node:cluster's.
  socket.once('listening', onListening);
  const unlisten = () => {
    if (!handles.has(handle)) return;
    handles.delete(handle);
    indexSet.set.delete(index);
    if (connected) {
      try {
        nw.unlisten(lid);
      } catch {
        // The channel just closed: nothing to leave.
      }
    }
  };
  const close = handle.close;
  handle.close = function () {
    unlisten();
    return close.apply(handle, arguments);
  };
  handles.add(handle);
  opened = true;
  state.bindState = BIND_STATE_UNBOUND;
  // 'listening' is emitted inside the bind call: what its listeners throw is theirs to throw.
  let started = false;
  const onStart = () => {
    started = true;
  };
  socket.prependOnceListener('listening', onStart);
  try {
    origBind.call(socket, { fd, exclusive: true });
  } catch (e) {
    if (started) throw e;
    socket.removeListener('listening', onStart);
    opened = false;
    socket.removeListener('listening', onListening);
    fs.closeSync(fd);
    unlisten();
    handle.close = close;
    state.bindState = BIND_STATE_UNBOUND;
    socket.emit('error', e);
  }
}

// Whether a round-robin connection is handed back to the primary, which deals it to another
// worker (node:cluster's child.js onconnection answers `accepted: false`): the server closed, or
// it is at its maxConnections. Node 20 tests `maxConnections &&` (0 means no limit); from Node 22
// on `maxConnections != null`, and `dropMaxConnection` makes net drop it ('drop') instead.
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);
function atLimit(server) {
  const max = server.maxConnections;
  if (NODE_MAJOR < 22 ? !max : max == null) return false;
  return server._connections >= max && (NODE_MAJOR < 22 || !server.dropMaxConnection);
}

// After a refusal at the limit, the first connection of the server to close tells the primary
// there is room again, so a client waiting for a full cluster is dealt at once (the primary
// would otherwise offer it again after up to 50 ms). net's Socket#_destroy calls the server's
// _emitCloseIfDrained right after `_connections--`: an own property wraps it until then.
function tellRoomWhenFreed(server, listener) {
  if (Object.prototype.hasOwnProperty.call(server, '_emitCloseIfDrained')) return;
  const emitCloseIfDrained = server._emitCloseIfDrained;
  if (typeof emitCloseIfDrained !== 'function') return;
  server._emitCloseIfDrained = function () {
    if (!atLimit(this)) {
      delete this._emitCloseIfDrained;
      try {
        if (connected && servers.has(listener)) nw.room(listener);
      } catch {
        // The channel just closed: nothing waits for this worker any more.
      }
    }
    return emitCloseIfDrained.apply(this, arguments);
  };
}

function onConnection(ev) {
  const handle = servers.get(ev.listener);
  const fd = ev.fds[0];
  // node:cluster's onconnection: refused when the server is gone (closed meanwhile) or full.
  const live = handle !== undefined && typeof handle.onconnection === 'function';
  const server = live ? handle[ownerSymbol(handle)] : undefined;
  if (!live || (server && atLimit(server))) {
    try {
      // kernel-rr: taken off the channel, so released here (the primary does not uncount a
      // refused one under kernel-rr); onconnection, which releases the others, is not reached.
      if (connected) workerAccepted(ev.listener);
      // The client a PROXY header named goes back with it (the header is consumed).
      if (connected) nw.refuse(ev.listener, fd, ev.address, ev.address === undefined ? undefined : ev.port);
      if (server) tellRoomWhenFreed(server, ev.listener);
    } catch {
      // The channel just closed: the connection goes with it, as node:cluster's would.
    }
    fs.closeSync(fd);
    return;
  }
  const client = new (handleClass(handle.isPipe))(HANDLE_TYPE.SOCKET);
  const err = client.open(fd);
  if (err) {
    fs.closeSync(fd);
    try {
      // Taken and closed at once: released under kernel-rr (at accept) and kernel-least.
      if (connected && nw.loadAware(ev.listener) && !workerAccepted(ev.listener)) nw.closed(ev.listener);
    } catch {
      // The channel just closed: nobody counts any more.
    }
    return;
  }
  if (ev.address !== undefined) {
    // The client a PROXY header named (the primary consumed the header): net.Socket asks its
    // handle for remoteAddress/remotePort/remoteFamily, inside the 'connection' emit already.
    const peer = { address: ev.address, port: ev.port, family: ev.family === 6 ? 'IPv6' : 'IPv4' };
    client.getpeername = (out) => {
      Object.assign(out, peer);
      return 0;
    };
  }
  handle.onconnection(0, client);
  // On a kernel-steered listener the handle is the worker's own socket, whose onconnection
  // releases what the primary dealt from the anchor as well (releaseLoad): once is enough.
  if (reportCloses && !nw.loadAware(ev.listener)) {
    const socket = client[ownerSymbol(client)];
    const listener = ev.listener;
    const report = () => {
      try {
        if (connected) nw.closed(listener);
      } catch {
        // The channel just closed: nobody counts any more.
      }
    };
    if (socket && typeof socket.once === 'function') socket.once('close', report);
    else report(); // no socket took it (the server dropped it): closed already
  }
}

function onEvents(events) {
  for (const ev of events) {
    switch (ev.kind) {
      case EV.CONNECTION:
        onConnection(ev);
        break;
      case EV.LISTEN_OK:
      case EV.LISTEN_ERR: {
        const cb = pending.get(ev.id);
        pending.delete(ev.id);
        // After a disconnect the answer is dropped, as node:cluster's never arrives.
        if (cb && connected) cb(ev);
        else for (const fd of ev.fds) fs.closeSync(fd);
        break;
      }
      case EV.MESSAGE:
        if (ev.flag) deliverBatch(process, ev.data, () => true);
        else deliver(process, ev.data, ev.fds);
        break;
      case EV.DISCONNECT_REQUEST:
        workerDisconnect.call(worker, true);
        break;
      case EV.FLUSHED:
        sendCallbacks.written(nw.written());
        break;
      case EV.ERROR: {
        // Out of fds (EMFILE: a connection or handle from the primary was lost) or a broken
        // channel. On process, as node:cluster's channel errors are: cluster.worker sees it,
        // and with no listener it is thrown (the worker exits 1 naming the errno) instead of
        // the worker going away with 0 as if the primary had left.
        const err = codedError(Error, ev.syscall || 'ERR_CORRAL_PROTOCOL', ev.message,
          ev.errno ? { errno: -ev.errno, syscall: 'recvmsg' } : undefined);
        process.nextTick(() => process.emit('error', err));
        break;
      }
      case EV.PRIMARY_GONE:
        sendCallbacks.fail();
        if (!closing && connected) {
          connected = false;
          process.channel = null;
          keepAlive.set(false);
          process.emit('disconnect');
        }
        break;
      default:
        break;
    }
  }
}

// Extra beyond node:cluster: tell the primary this worker has warmed up.
// After the disconnect it throws what a send reports in node:cluster.
Worker.prototype.ready = function ready() {
  if (!connected) throw channelClosed();
  sendCallbacks.flush();
  nw.ready();
};
