'use strict';
// Run with CORRAL_FAULT=panic: a panic in a native call and one in a libuv callback of the addon
// each reach JS as an error (thrown, uncaught), and the process goes on and exits 0.
const { addon } = require('../../lib/native');

try {
  addon.__panicForTest('call', () => {});
  console.log('call: no error');
} catch (e) {
  console.log(`call: thrown ${e instanceof Error} ${/fault injected in a #\[napi\] call/.test(e.message)}`);
}

const deadline = setTimeout(() => {
  console.log('TIMEOUT: no uncaught exception from the libuv callback');
  process.exit(99);
}, 10000);
process.on('uncaughtException', (e) => {
  console.log(`uv: uncaught ${e instanceof Error} ${e.code} ${/fault injected in a libuv callback/.test(e.message)}`);
  clearTimeout(deadline);
  // The loop goes on after the panic: a timer still fires.
  setTimeout(() => console.log('still running'), 10);
});
addon.__panicForTest('uv', () => console.log('uv: callback reached'));
process.on('exit', (code) => console.log(`exit ${code}`));
