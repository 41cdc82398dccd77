'use strict';
// 'advanced' messages of every size around the encoder's reused buffer (lib/messages.js: it
// starts at 64 KiB, grows to 1 MiB while a value does not fit, and bigger values go through
// v8.Serializer): each arrives whole, in order, in both directions, and a value that
// lib/v8wire.js declines (a Map) still goes through V8's serializer after the buffer grew.
const cluster = require(process.env.CORRAL_MODULE);

const KIB = 1024;
const SIZES = [10, 64 * KIB - 40, 64 * KIB, 64 * KIB + 1, 200 * KIB, KIB * KIB - 100, KIB * KIB + 7, 3 * KIB * KIB, 100];
const message = (i) => ({
  i,
  data: String.fromCharCode(97 + (i % 26)).repeat(SIZES[i]) + 'é',
  map: i % 3 === 2 ? new Map([['k', i]]) : undefined,
});
const whole = (m) => {
  const want = message(m.i);
  return m.data === want.data && (want.map === undefined ? m.map === undefined : m.map.get('k') === m.i);
};

if (cluster.isPrimary) {
  cluster.setupPrimary({ serialization: 'advanced' });
  const w = cluster.fork();
  let next = 0;
  let ok = true;
  w.on('message', (m) => {
    if (m.done) {
      console.log(`worker got ${SIZES.length} whole and in order: ${m.ok}`);
      w.disconnect();
      return;
    }
    ok = ok && m.i === next && whole(m);
    if (++next < SIZES.length) return;
    console.log(`primary got ${SIZES.length} whole and in order: ${ok}`);
    w.send({ done: true });
  });
  w.on('exit', (code) => console.log(`exit ${code}`));
  for (let i = 0; i < SIZES.length; i++) w.send(message(i));
} else {
  let next = 0;
  let ok = true;
  process.on('message', (m) => {
    if (m.done) {
      process.send({ done: true, ok });
      return;
    }
    ok = ok && m.i === next++ && whole(m);
    process.send(message(m.i));
  });
}
