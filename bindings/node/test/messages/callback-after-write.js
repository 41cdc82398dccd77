'use strict';
// send(message, callback) calls back once the message is written to the channel, as Node's
// does: with the reader busy, a 5 MiB message and the one after it wait in the sender's queue,
// and the callback waits with them. Both directions: the primary sends to a worker that does
// not read for 600 ms; that worker then sends to a primary that does not read for 600 ms.
const cluster = require(process.env.CORRAL_MODULE);
const BUSY_MS = 600;
const busy = (ms) => {
  const end = Date.now() + ms;
  while (Date.now() < end);
};
const big = 'x'.repeat(5 << 20);

if (cluster.isPrimary) {
  const w = cluster.fork();
  let sentAt;
  w.on('message', (m) => {
    if (m === 'busy') {
      // The worker is blocked now: the queue cannot drain until it reads again.
      sentAt = Date.now();
      w.send(big);
      w.send('last', (err) => {
        const waited = Date.now() - sentAt;
        console.log(`primary -> worker: callback err=${err} waited for the write: ${waited >= BUSY_MS / 2}`);
      });
    } else if (m.got) {
      console.log(`worker got ${m.got.join(',')}`);
      // Now the other way round: the primary stops reading for a while.
      w.send('your turn');
      busy(BUSY_MS);
    } else if (m.done) {
      console.log(`worker -> primary: callback err=${m.err} waited for the write: ${m.waited >= BUSY_MS / 2}`);
      w.disconnect();
    }
  });
  let bigSeen = 0;
  w.on('message', (m) => {
    if (typeof m === 'string' && m.length === big.length) bigSeen++;
  });
  w.on('exit', (code) => console.log(`exit ${code}, primary got the big message ${bigSeen} time(s)`));
} else {
  const got = [];
  process.on('message', (m) => {
    if (m === 'your turn') {
      const t0 = Date.now();
      process.send(big);
      process.send({ note: 'after big' }, (err) => process.send({ done: true, err: String(err), waited: Date.now() - t0 }));
      return;
    }
    got.push(typeof m === 'string' && m.length > 100 ? `big(${m.length})` : m);
    if (got.length === 2) process.send({ got });
  });
  process.send('busy');
  busy(BUSY_MS);
}
