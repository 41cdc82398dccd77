'use strict';
// Errors shaped as Node's own (lib/internal/errors.js): a `code`, a stack that starts
// "Error [CODE]: message", and for system errors `errno` (negative, as libuv's), `syscall`,
// `address` and `port`. Every error corral throws or emits is made here, so tests and users
// can rely on `err.code` exactly as with node:cluster.

const os = require('os');
const util = require('util');

// An error of class `Base` with `code`, as Node's `new ERR_X(...)`.
function codedError(Base, code, message, props) {
  const err = new Base(message);
  Error.captureStackTrace(err, codedError);
  err.code = code;
  if (typeof err.stack === 'string' && err.stack.startsWith(`${err.name}: `)) {
    err.stack = `${err.name} [${code}]: ${err.stack.slice(err.name.length + 2)}`;
  }
  if (props) Object.assign(err, props);
  return err;
}

// A system error as libuv's errnoException: "<syscall> <CODE> <address>[:<port>]", from a
// positive errno or a code name.
function systemError(syscall, errnoOrCode, address, port) {
  const errno = typeof errnoOrCode === 'number' ? errnoOrCode : os.constants.errno[errnoOrCode];
  const code = typeof errnoOrCode === 'number' ? util.getSystemErrorName(-errnoOrCode) : errnoOrCode;
  let where = '';
  if (address !== undefined && address !== null) where = port > 0 ? ` ${address}:${port}` : ` ${address}`;
  const err = new Error(`${syscall} ${code}${where}`);
  Error.captureStackTrace(err, systemError);
  err.errno = errno === undefined ? undefined : -errno;
  err.code = code;
  err.syscall = syscall;
  if (address !== undefined && address !== null) err.address = address;
  if (port > 0) err.port = port;
  return err;
}

const channelClosed = () => codedError(Error, 'ERR_IPC_CHANNEL_CLOSED', 'Channel closed');
const ipcDisconnected = () => codedError(Error, 'ERR_IPC_DISCONNECTED', 'IPC channel is already disconnected');

function invalidArgType(name, expected, value) {
  return codedError(TypeError, 'ERR_INVALID_ARG_TYPE',
    `The "${name}" argument must be ${expected}. Received type ${typeof value} (${util.inspect(value)})`);
}

// An error the addon threw: napi made it with Node's `code` already (napi_create_error, see
// bindings/node/src/error.rs). What napi cannot attach is added here: `errno` when the code is an
// errno name, as on Node's system errors, and the stack header of Node's own coded errors.
function nativeError(e) {
  if (!(e instanceof Error) || typeof e.code !== 'string') return e;
  const errno = os.constants.errno[e.code];
  if (errno !== undefined && e.errno === undefined) e.errno = -errno;
  if (typeof e.stack === 'string' && e.stack.startsWith(`${e.name}: `)) {
    e.stack = `${e.name} [${e.code}]: ${e.stack.slice(e.name.length + 2)}`;
  }
  return e;
}

module.exports = { codedError, systemError, channelClosed, ipcDisconnected, invalidArgType, nativeError };
