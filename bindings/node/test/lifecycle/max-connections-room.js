'use strict';
// One worker, server.maxConnections = 1: client A holds it, client B waits (the worker refuses
// it, the primary keeps offering it with a growing delay, 50 ms after a few tries). After
// WAIT ms A leaves; the worker times, on its own clock, how long after A's socket closed B's
// 'connection' came. Prints "round N: Xms" per round, then "done".
const cluster = require(process.env.CORRAL_MODULE);
const net = require('node:net');

const ROUNDS = 7;
const WAIT = 200;

if (cluster.isPrimary) {
  setTimeout(() => {
    console.log('TIMEOUT');
    process.exit(99);
  }, 20000).unref();
  const w = cluster.fork();
  w.on('message', async (m) => {
    if (m.gap !== undefined) {
      console.log(`round ${m.round}: ${m.gap.toFixed(1)}ms`);
      if (m.round === ROUNDS) {
        console.log('done');
        w.disconnect();
      }
      return;
    }
    for (let round = 1; round <= ROUNDS; round++) {
      const a = await greeted(m.port);
      const b = greeted(m.port);
      await new Promise((resolve) => setTimeout(resolve, WAIT));
      w.send({ round });
      a.end();
      (await b).end();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
} else {
  let round = 0;
  let armed = false; // the primary is about to end A: time its close
  let closedAt = null;
  const server = net.createServer((s) => {
    if (closedAt !== null) {
      const gap = Number(process.hrtime.bigint() - closedAt) / 1e6;
      closedAt = null;
      process.send({ round, gap });
    }
    s.on('close', () => {
      if (armed) {
        armed = false;
        closedAt = process.hrtime.bigint();
      }
    });
    s.write('hi\n');
    s.resume();
  });
  server.maxConnections = 1;
  process.on('message', (m) => {
    round = m.round;
    armed = true;
  });
  server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
}

function greeted(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('data', () => resolve(s));
    s.on('error', reject);
  });
}
