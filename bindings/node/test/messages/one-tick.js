'use strict';
// Messages sent in one tick leave as one Batch frame (lib/messages.js Outbox): order, callbacks
// and send()'s result stay as one send at a time gives them. Each side sends N messages in one
// tick with a big message (sent on its own) in the middle, the primary also a server handle
// (idem); then it asks the worker to disconnect in the same tick: nothing is lost, nothing
// overtakes the messages.
const cluster = require(process.env.CORRAL_MODULE);
const net = require('net');
const N = 1000;
const HANDLE_AT = 400;
const BIG_AT = 700;
const big = 'y'.repeat(20 << 10);
const nth = (i) => (i === BIG_AT ? big : { i, pad: 'x'.repeat(i % 97) });

// Sends N messages now; the callbacks must come in order, each after the previous one.
function sendAll(send, server, done) {
  let called = 0;
  let inOrder = true;
  let allTrue = true;
  for (let i = 0; i < N; i++) {
    const cb = (err) => {
      if (err || called !== i) inOrder = false;
      if (++called === N) done(inOrder);
    };
    const ok = i === HANDLE_AT && server ? send(nth(i), server, cb) : send(nth(i), cb);
    allTrue = allTrue && ok === true;
  }
  return allTrue;
}

// Checks what arrived: N messages in order, the big one, the handle with message HANDLE_AT
// (if one was sent).
function checker(withHandle) {
  let next = 0;
  let ok = true;
  return {
    got(m, handle) {
      const want = nth(next);
      const same = next === BIG_AT ? m === big : m && m.i === want.i && m.pad === want.pad;
      if (!same || (withHandle && next === HANDLE_AT) !== (handle instanceof net.Server)) ok = false;
      if (handle) handle.close();
      next++;
    },
    count: () => next,
    report: () => `${next} in order: ${ok && next === N}`,
  };
}

if (cluster.isPrimary) {
  const w = cluster.fork();
  const c = checker(false);
  w.on('message', (m, handle) => {
    c.got(m, handle);
    if (c.count() < N) return;
    console.log(`primary got ${c.report()}`);
    // Now the other way, and the request to disconnect in the same tick: it comes last.
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      sendAll((...a) => w.send(...a), server, (inOrder) => {
        console.log(`primary callbacks in order: ${inOrder}`);
      });
      w.disconnect();
      server.close();
    });
  });
  w.on('exit', (code) => console.log(`exit ${code}`));
} else {
  const c = checker(true);
  process.on('message', (m, handle) => c.got(m, handle));
  cluster.worker.on('disconnect', () => console.log(`worker got ${c.report()}`));
  // A worker's servers are the primary's (no handle of its own to send): no handle this way.
  const allTrue = sendAll(process.send.bind(process), null, (inOrder) => {
    console.log(`worker callbacks in order: ${inOrder}`);
  });
  console.log(`worker send() returned true: ${allTrue}`);
}
