'use strict';
// IPC ping-pong for the benchmarks: the primary sends a message to one worker, the worker sends it
// back, and only then does the primary send the next one (one message in flight). Prints
// `ipc <json>` with the rate and exits, stopping its worker.
//
// Environment:
//   BENCH_CLUSTER_MODULE     module providing the cluster API (default 'node:cluster')
//   BENCH_IPC_SERIALIZATION  'json' (default) or 'advanced' (cluster.setupPrimary({serialization}))
//   BENCH_IPC_BYTES          payload size: the message is {seq, data} with data a string of this
//                            many ASCII characters (default 64)
//   BENCH_IPC_WARMUP_MS      round trips during this first period are not counted (default 300)
//   BENCH_IPC_MAX_MS         measure for at most this long after the warm-up (default 1000)
//   BENCH_IPC_MAX_COUNT      ... or until this many round trips were counted (default 1000000)

const cluster = require(process.env.BENCH_CLUSTER_MODULE || 'node:cluster');

const env = (name, dflt) => process.env[name] ?? dflt;

if (cluster.isPrimary) {
  const serialization = env('BENCH_IPC_SERIALIZATION', 'json');
  const bytes = Number(env('BENCH_IPC_BYTES', 64));
  const warmupMs = Number(env('BENCH_IPC_WARMUP_MS', 300));
  const maxMs = Number(env('BENCH_IPC_MAX_MS', 1000));
  const maxCount = Number(env('BENCH_IPC_MAX_COUNT', 1e6));
  const data = 'x'.repeat(bytes);

  cluster.setupPrimary({ serialization });
  const worker = cluster.fork();
  const now = () => Number(process.hrtime.bigint()) / 1e6;
  let seq = 0;
  let warmupEnds = 0;
  let measureStart = 0;
  let counted = 0;

  worker.on('message', (msg) => {
    if (msg === 'ready') {
      warmupEnds = now() + warmupMs;
      worker.send({ seq: ++seq, data });
      return;
    }
    if (msg.seq !== seq || msg.data.length !== bytes) throw new Error(`bad echo ${msg.seq}/${seq}`);
    const t = now();
    if (measureStart === 0) {
      if (t >= warmupEnds) measureStart = t;
    } else {
      counted++;
      if (counted >= maxCount || t - measureStart >= maxMs) return finish(t);
    }
    worker.send({ seq: ++seq, data });
  });

  function finish(t) {
    const seconds = (t - measureStart) / 1000;
    const roundTrips = counted / seconds;
    const result = { serialization, bytes, roundTrips: counted, seconds, msgsPerSec: 2 * roundTrips };
    console.log(`ipc ${JSON.stringify(result)}`);
    stop();
  }

  // Exit only once the worker is gone (reaped by us), so it is never left to init.
  let stopping = false;
  function stop() {
    if (stopping) return;
    stopping = true;
    worker.on('exit', () => process.exit(0));
    worker.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000).unref();
  }
  process.on('SIGTERM', stop);
} else {
  const worker = cluster.worker;
  worker.on('message', (msg) => worker.send(msg));
  worker.send('ready');
}
