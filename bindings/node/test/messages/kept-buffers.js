'use strict';
// Typed arrays and Buffers received in 'advanced' messages are the receiver's to keep: a
// later message must not change them (small batches are read into a reused buffer,
// bindings/node/src/events.rs SharedBuffer). Both directions; the messages go one at a time
// (each waits for the answer to the previous one), so each is a batch of its own.
const cluster = require(process.env.CORRAL_MODULE);

const N = 50;
const fill = (i) => Buffer.alloc(64, 97 + (i % 26));
const intact = (kept) => kept.every((m, i) => m.b.equals(fill(i)) && m.u[0] === i && m.u.length === 4);

if (cluster.isPrimary) {
  cluster.setupPrimary({ serialization: 'advanced' });
  const w = cluster.fork();
  const kept = [];
  w.on('message', (m) => {
    if (m.done) {
      console.log(`worker kept ${N} intact: ${m.intact}`);
      w.disconnect();
      return;
    }
    kept.push(m);
    if (kept.length < N) w.send({ i: kept.length, b: fill(kept.length), u: new Uint32Array([kept.length, 0, 0, 0]) });
    else {
      console.log(`primary kept ${N} intact: ${intact(kept)}`);
      w.send({ done: true });
    }
  });
  w.on('exit', (code) => console.log(`exit ${code}`));
  w.send({ i: 0, b: fill(0), u: new Uint32Array([0, 0, 0, 0]) });
} else {
  const kept = [];
  process.on('message', (m) => {
    if (m.done) {
      process.send({ done: true, intact: intact(kept) });
      return;
    }
    kept.push(m);
    process.send({ i: m.i, b: fill(m.i), u: new Uint32Array([m.i, 0, 0, 0]) });
  });
}
