'use strict';
// Messages a worker sent before it went away reach the primary before its 'disconnect' and
// 'exit' (corral reads them on the primary's JS thread, apart from the engine's events): one
// worker sends a burst (with a 5 MiB message in the middle) and exits at once; another sends
// a burst and disconnects. A third sends at once on start: 'online' still comes first.
const cluster = require(process.env.CORRAL_MODULE);
const N = 300;
if (cluster.isPrimary) {
  const results = [];
  const done = () => {
    if (results.length === 3) {
      for (const line of results.sort()) console.log(line);
    }
  };
  const watch = (mode) => {
    const w = cluster.fork({ MODE: mode });
    const seen = [];
    w.on('online', () => seen.push('online'));
    w.on('message', (m) => seen.push(typeof m === 'string' ? `big ${m.length}` : m));
    w.on('disconnect', () => seen.push('disconnect'));
    w.on('exit', (code) => {
      const msgs = seen.filter((x) => typeof x === 'number');
      const inOrder = msgs.every((x, i) => x === i);
      const before = seen.indexOf('disconnect') === seen.length - 1;
      const bigs = seen.filter((x) => typeof x === 'string' && x.startsWith('big')).join(',');
      results.push(`${mode}: first=${seen[0]} messages=${msgs.length} inOrder=${inOrder} ` +
        `disconnectLast=${before} ${bigs} exit=${code}`);
      done();
    });
  };
  watch('exit');
  watch('disconnect');
  watch('early');
} else {
  const mode = process.env.MODE;
  for (let i = 0; i < N; i++) {
    process.send(i);
    if (i === N / 2 && mode === 'exit') process.send('x'.repeat(5 << 20));
  }
  if (mode === 'exit') {
    // Every send above went out synchronously or is queued; wait for the queue, then exit
    // without disconnecting.
    const wait = () => (process.send(N, () => process.exit(0)));
    wait();
  } else if (mode === 'disconnect') {
    process.send(N, () => process.disconnect());
  } else {
    process.send(N, () => cluster.worker.disconnect());
  }
}
