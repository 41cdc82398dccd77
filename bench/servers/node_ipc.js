'use strict';
// IPC for the benchmarks. Ping-pong (BENCH_IPC_MODE=pingpong, the default): the primary sends a
// message to one worker, the worker sends it back, and only then does the primary send the next
// one (one message in flight). Streaming (`up`: worker to primary, `down`: primary to worker): the
// sender sends as fast as send() lets it, keeping at most BENCH_IPC_WINDOW messages whose send
// callback has not fired (both node:cluster and corral call it once the message is written to
// the channel, so memory stays bounded), and the receiver counts. Prints `ipc <json>` with the
// rate and exits, stopping its worker. With /proc (Linux), it also prints the CPU each process
// spent per message (`cpuUsPerMsg: {primary, worker}`: CPU share over the measured period
// divided by the rate), which a shared, loaded machine disturbs much less than the rate.
//
// Environment:
//   BENCH_IPC_MODE           'pingpong' (default), 'up' or 'down'
//   BENCH_IPC_WINDOW         streaming: messages written-but-not-confirmed at most (default 256)
//   BENCH_CLUSTER_MODULE     module providing the cluster API (default 'node:cluster')
//   BENCH_IPC_SERIALIZATION  'json' (default) or 'advanced' (cluster.setupPrimary({serialization}))
//   BENCH_IPC_BYTES          payload size: the message is {seq, data} with data a string of this
//                            many ASCII characters (default 64)
//   BENCH_IPC_WARMUP_MS      round trips during this first period are not counted (default 300)
//   BENCH_IPC_MAX_MS         measure for at most this long after the warm-up (default 1000)
//   BENCH_IPC_MAX_COUNT      ... or until this many round trips were counted (default 1000000)

const cluster = require(process.env.BENCH_CLUSTER_MODULE || 'node:cluster');

const env = (name, dflt) => process.env[name] ?? dflt;
const MODE = env('BENCH_IPC_MODE', 'pingpong');
const WINDOW = Number(env('BENCH_IPC_WINDOW', 256));
const now = () => Number(process.hrtime.bigint()) / 1e6;

// Streaming sender: `send(msg, cb)` as fast as the window allows, until stop() is called.
function streamer(send, data) {
  let inflight = 0;
  let seq = 0;
  let stopped = false;
  const written = () => {
    inflight--;
    pump();
  };
  function pump() {
    while (!stopped && inflight < WINDOW) {
      inflight++;
      send({ seq: ++seq, data }, written);
    }
  }
  return { start: pump, stop: () => (stopped = true) };
}

// Streaming receiver: counts data messages after the warm-up; { count, ms } when asked.
function counter(warmupMs) {
  const warmupEnds = now() + warmupMs;
  let first = 0;
  let last = 0;
  let count = 0;
  return {
    got() {
      const t = now();
      if (first === 0) {
        if (t >= warmupEnds) first = t;
      } else {
        count++;
        last = t;
      }
    },
    result: () => ({ count, ms: last - first }),
  };
}

if (cluster.isPrimary) {
  const serialization = env('BENCH_IPC_SERIALIZATION', 'json');
  const bytes = Number(env('BENCH_IPC_BYTES', 64));
  const warmupMs = Number(env('BENCH_IPC_WARMUP_MS', 300));
  const maxMs = Number(env('BENCH_IPC_MAX_MS', 1000));
  const maxCount = Number(env('BENCH_IPC_MAX_COUNT', 1e6));
  const data = 'x'.repeat(bytes);

  cluster.setupPrimary({ serialization });
  const worker = cluster.fork({ BENCH_IPC_MODE: MODE, BENCH_IPC_BYTES: String(bytes) });
  let seq = 0;
  let warmupEnds = 0;
  let measureStart = 0;
  let counted = 0;

  // CPU of this process and of the worker (utime + stime, ms) from /proc; null without it.
  const cpuMs = () => {
    try {
      return [process.pid, worker.process.pid].map((pid) => {
        const f = require('fs').readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
        return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // USER_HZ is 100 on Linux
      });
    } catch {
      return null;
    }
  };
  let cpuFrom = null;
  const cpuMark = () => {
    cpuFrom = { at: now(), cpu: cpuMs() };
  };
  const report = (count, ms) => {
    const seconds = ms / 1000;
    const result = { mode: MODE, serialization, bytes, count, seconds, msgsPerSec: count / seconds };
    const cpu = cpuMs();
    if (cpuFrom && cpuFrom.cpu && cpu && count > 0) {
      const wall = now() - cpuFrom.at;
      const perMsg = (i) => +((((cpu[i] - cpuFrom.cpu[i]) / wall) * 1e6) / result.msgsPerSec).toFixed(2);
      result.cpuUsPerMsg = { primary: perMsg(0), worker: perMsg(1) };
    }
    console.log(`ipc ${JSON.stringify(result)}`);
    stop();
  };

  if (MODE === 'up') {
    // The worker streams; this side counts.
    let c = null;
    worker.on('message', (msg) => {
      if (msg === 'ready') {
        c = counter(warmupMs);
        setTimeout(cpuMark, warmupMs);
        setTimeout(() => {
          const r = c.result();
          report(r.count, r.ms);
        }, warmupMs + maxMs);
        return;
      }
      c.got();
    });
  } else if (MODE === 'down') {
    // This side streams; the worker counts and reports when asked (the question travels
    // behind the data, in order).
    const s = streamer((m, cb) => worker.send(m, cb), data);
    worker.on('message', (msg) => {
      if (msg === 'ready') {
        s.start();
        setTimeout(cpuMark, warmupMs);
        setTimeout(() => {
          s.stop();
          worker.send('report');
        }, warmupMs + maxMs);
      } else if (msg && msg.count !== undefined) {
        report(msg.count, msg.ms);
      }
    });
  } else {
    worker.on('message', (msg) => {
      if (msg === 'ready') {
        warmupEnds = now() + warmupMs;
        worker.send({ seq: ++seq, data });
        return;
      }
      if (msg.seq !== seq || msg.data.length !== bytes) throw new Error(`bad echo ${msg.seq}/${seq}`);
      const t = now();
      if (measureStart === 0) {
        if (t >= warmupEnds) {
          measureStart = t;
          cpuMark();
        }
      } else {
        counted++;
        if (counted >= maxCount || t - measureStart >= maxMs) {
          // Both directions count.
          return report(2 * counted, t - measureStart);
        }
      }
      worker.send({ seq: ++seq, data });
    });
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
  if (MODE === 'up') {
    const s = streamer((m, cb) => process.send(m, cb), 'x'.repeat(Number(env('BENCH_IPC_BYTES', 64))));
    worker.send('ready');
    s.start();
  } else if (MODE === 'down') {
    const c = counter(Number(env('BENCH_IPC_WARMUP_MS', 300)));
    worker.on('message', (msg) => {
      if (msg === 'report') worker.send(c.result());
      else c.got();
    });
    worker.send('ready');
  } else {
    worker.on('message', (msg) => worker.send(msg));
    worker.send('ready');
  }
}
