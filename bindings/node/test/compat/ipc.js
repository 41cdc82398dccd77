'use strict';
// Scenario: IPC both ways with the default (JSON) serialization. Each worker says hello, sends
// 20 pipelined 'inc' requests that the primary counts and answers in order, receives 20 pushes
// from the primary in order, and reports what it saw. Also: JSON semantics of values, non-object
// messages, `NODE_`-prefixed cmds kept internal, listener order, send() return value and callback.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');

const N = 2;
const COUNT = 20;

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  let total = 0; // primary-side counter over all workers
  const perWorker = new Map(); // id -> { count, lines, order, ... }

  cluster.on('message', function (worker, msg, handle) {
    perWorker.get(worker.id).order.push(`cluster 'message' (${arguments.length} args, handle ${handle})`);
  });

  for (let i = 0; i < N; i++) {
    const w = cluster.fork();
    const st = { count: 0, lines: [], order: [], plain: [] };
    perWorker.set(w.id, st);
    w.on('message', function (msg, handle) {
      st.order.push(`worker 'message' (${arguments.length} args, handle ${handle})`);
      if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || msg.cmd === 'NODE_') {
        st.plain.push(`${msg === null ? 'null' : Array.isArray(msg) ? 'array' : typeof msg} ${JSON.stringify(msg)}`);
        return;
      }
      switch (msg.cmd) {
        case 'hello': {
          st.lines.push(`hello from id ${msg.id} (matches worker.id ${msg.id === w.id}, pid matches ${msg.pid === w.process.pid})`);
          st.lines.push(`JSON value as received: ${JSON.stringify(msg.value)}; has 'undef' key ${'undef' in msg.value}`);
          for (let seq = 0; seq < COUNT; seq++) {
            const ret = w.send({ cmd: 'push', seq }, seq === 0 ? (err) => st.lines.push(`send callback err ${err}`) : undefined);
            if (seq === 0) st.lines.push(`worker.send() returned ${ret}`);
          }
          break;
        }
        case 'inc':
          total++;
          st.count++;
          w.send({ cmd: 'count', seq: msg.seq, count: st.count });
          break;
        case 'done':
          st.lines.push(`worker report: ${msg.report.join('; ')}`);
          if ([...perWorker.values()].every((s) => s.lines.some((l) => l.startsWith('worker report')))) finish();
          break;
        default:
          st.lines.push(`unexpected cmd ${msg.cmd}`);
      }
    });
  }

  function finish() {
    for (const [id, st] of perWorker) {
      console.log(`worker ${id}:`);
      for (const line of st.lines) console.log(`  ${line}`);
      console.log(`  primary counted ${st.count} inc messages`);
      console.log(`  non-object / 'NODE_' messages in order: ${st.plain.join(' | ')}`);
      console.log(`  listener order for the first message: ${st.order.slice(0, 2).join(', then ')}`);
      console.log(`  every message went to both listeners: ${st.order.length % 2 === 0}`);
    }
    console.log(`primary total ${total}`);
    cluster.disconnect();
  }
} else {
  const id = cluster.worker.id;
  const report = [];
  const order = [];
  let pushSeq = 0;
  let pushInOrder = true;
  let countSeq = 0;
  let countInOrder = true;
  let reported = false;

  cluster.worker.on('message', () => order.push('cluster.worker'));
  process.on('message', (msg) => {
    order.push('process');
    if (msg.cmd === 'push') {
      if (msg.seq !== pushSeq++) pushInOrder = false;
    } else if (msg.cmd === 'count') {
      // The primary answers in the order the requests were sent, with a running count.
      if (msg.seq !== countSeq || msg.count !== countSeq + 1) countInOrder = false;
      countSeq++;
    }
    if (!reported && pushSeq === COUNT && countSeq === COUNT) {
      reported = true;
      report.push(`pushes in order ${pushInOrder} (${pushSeq})`, `counts in order ${countInOrder} (${countSeq})`);
      report.push(`listener order ${order.slice(0, 2).join(' then ')}`);
      process.send({ cmd: 'done', report });
    }
  });

  try {
    process.send({ cmd: 'bigint', value: 1n });
    report.push('BigInt: no throw');
  } catch (err) {
    report.push(`BigInt throws synchronously: ${err.name}: ${err.message}`);
  }
  // Internal-looking cmds never reach 'message'; exactly 'NODE_' is not internal.
  process.send({ cmd: 'NODE_custom' });
  process.send({ cmd: 'NODE_' });
  for (const v of ['text', 42, null, [1, 'a'], true]) process.send(v);
  process.send({
    cmd: 'hello',
    id,
    pid: process.pid,
    value: { undef: undefined, nan: NaN, inf: Infinity, negZero: -0, date: new Date(0), fn() {}, nested: [1, { a: 'é\u{1F600}' }] },
  });
  for (let seq = 0; seq < COUNT; seq++) process.send({ cmd: 'inc', seq });
}
