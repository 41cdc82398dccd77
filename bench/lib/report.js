'use strict';
// Turns the samples of a bench/run into the markdown report (tables of median, min, max, ratios
// to the anchors measured in the same run, and the project's targets).

const { summary, pairedRatio } = require('./stats');

const ANCHOR = 'node-cluster-rr';
const C_ANCHOR = 'nginx';

// wrk's one thread busy this much of the run: the load generator, not the server, set the rate.
const WRK_BOUND = 0.95;

const int = (x) => Math.round(x).toLocaleString('en-US');
const fixed = (d) => (x) => x.toFixed(d);

/** Targets from the project issue, by metric and configuration. */
const TARGETS = {
  // The Node servers' targets are read head to head too (one wrk thread, passes seconds
  // apart): a round's ratio moves by ±10 % with the VM's drift alone.
  nodeH2hKeepalive: {
    'corral-rr': [{ anchor: 'node-cluster-rr', atLeast: 0.97 }],
    'corral-shared': [{ anchor: 'node-cluster-none', atLeast: 0.97 }],
  },
  nodeH2hClose: {
    'corral-rr': [
      { anchor: 'node-cluster-rr', atLeast: 2 },
      { anchor: 'node-cluster-none', atLeast: 0.95 },
    ],
    // Issue 13: the kernel path must beat the anchors that have no primary in the path.
    'corral-kernel-rr': [
      { anchor: 'node-cluster-rr', atLeast: 2 },
      { anchor: 'node-cluster-none', atLeast: 1 },
    ],
  },
  close: {
    'corral-sticky': [{ anchor: 'corral-rr', atLeast: 0.95 }],
  },
  // The C servers' targets against nginx are read head to head (two wrk threads, passes
  // seconds apart): in the tables of the rounds one wrk thread is their limit.
  h2hKeepalive: {
    'c-hello-rr': [{ anchor: 'nginx', atLeast: 1 }],
    'c-hello-shared': [{ anchor: 'nginx', atLeast: 1 }],
  },
  h2hClose: {
    'c-hello-rr': [{ anchor: 'nginx', atLeast: 1 }],
    'c-hello-shared': [{ anchor: 'nginx', atLeast: 1 }],
    'c-hello-kernel-rr': [{ anchor: 'nginx', atLeast: 1.05 }],
  },
  closePinned: {
    'corral-rr': [
      { anchor: 'node-cluster-rr', atLeast: 2 },
      { anchor: 'node-cluster-none', atLeast: 0.95 },
    ],
  },
  primary8k: {
    ...Object.fromEntries(
      ['corral-rr', 'corral-shared', 'c-hello-rr', 'c-hello-shared'].map((c) => [c, [{ atMost: 0.1 }]]),
    ),
    // Out of the data path: 0.00 core (at most one 100 Hz tick's worth).
    'corral-kernel-rr': [{ atMost: 0.005 }],
    'c-hello-kernel-rr': [{ atMost: 0.005 }],
  },
  // Issue 14: least must cut the tail that round-robin leaves behind a stalled worker. The rr
  // the issue means is blind to load (corral-rr-blind: corral-rr without its stall check, as
  // PM2 and gunicorn deal). corral-rr itself takes back what a stuck worker left unread after
  // 25 ms, and node:cluster's rr deals only to a worker that acknowledged its last connection:
  // neither leaves that tail (their ratios are in the table, no target).
  skewP99: {
    'corral-least': [{ anchor: 'corral-rr-blind', atMost: 0.5 }],
    'corral-rr': [{ anchor: 'corral-rr-blind', atMost: 0.5 }],
  },
  balance: { 'corral-rr': [{ atMost: 1.05 }], 'corral-kernel-rr': [{ atMost: 1.01 }] },
};

const HTTP_METRICS = [
  {
    id: 'keepalive',
    title: 'Requests/s, keep-alive (higher is better)',
    how: 'wrk -t1 -c50, keep-alive connections. The Node servers\' targets are read head to head further down (passes seconds apart), and the C servers are compared with nginx there too, with two wrk threads: one is slower than they are.',
    get: (r) => r.keepalive?.rate,
    wrk: (r) => r.keepalive?.wrkCores,
    errors: (r) => r.keepalive?.errors,
    fmt: int,
  },
  {
    id: 'close',
    title: 'Connections/s, `Connection: close` (higher is better)',
    how: "wrk -t1 -c50 -H 'Connection: close': one TCP connection per request, so every request goes through the accept/dispatch path. The Node servers' targets are read head to head further down (passes seconds apart), and the C servers are compared with nginx there too, with two wrk threads: one is slower than they are.",
    get: (r) => r.close?.rate,
    wrk: (r) => r.close?.wrkCores,
    errors: (r) => r.close?.errors,
    fmt: int,
  },
  {
    id: 'closePinned',
    title: 'Connections/s, `Connection: close`, server on CPU 0 and wrk on CPU 1 (higher is better)',
    how: "the `Connection: close` run once more with every thread of the server's processes pinned to CPU 0 (taskset -a -p) and wrk to CPU 1, so that the load generator does not compete for the server's CPU. The server's own cost decides the rate only where the server is slower than wrk: a faster one keeps wrk's core busy (†), and its rate is wrk's.",
    get: (r) => r.closePinned?.rate,
    wrk: (r) => r.closePinned?.wrkCores,
    errors: (r) => r.closePinned?.errors,
    fmt: int,
  },
  {
    id: 'p50',
    title: 'Latency p50 in ms under moderate load (lower is better)',
    how: 'paced `Connection: close` load (see "Latency" below); latency from writing the request to the whole response, so it includes the dispatch of the new connection to a worker.',
    get: (r) => r.latency?.latencyMs.p50,
    errors: (r) => r.latency?.errors,
    fmt: fixed(2),
  },
  {
    id: 'p99',
    title: 'Latency p99 in ms under moderate load (lower is better)',
    how: 'same runs as p50.',
    get: (r) => r.latency?.latencyMs.p99,
    errors: (r) => r.latency?.errors,
    fmt: fixed(2),
  },
  {
    id: 'skewP50',
    title: 'Latency p50 in ms, skewed service times (lower is better)',
    how:
      'a server of its own whose workers block their event loop for 200 ms on 1 request in 600, at random (BENCH_SKEW=600:200 in bench/servers/node_hello.js: a handler stuck on synchronous I/O), ' +
      'under a paced `Connection: close` load for 20 s from bench/lib/paced_close.js: 12 clients, each pausing 50 ms, then connecting and sending its request at once (about 225 requests/s); latency from connect() to the end of the response. ' +
      'Not wrk: wrk connects first and pauses on the open connection, so each request was dealt to a worker 50 ms before it was sent, and a worker that stalled held its ~6 idle connections whatever the policy. ' +
      'Only node-cluster-rr and the corral rows with a value run it. corral-rr-blind is corral-rr with its stall check off (CORRAL_STALL_TIMEOUT_MS=0): round-robin blind to a stuck worker, as issue 14 describes rr and as PM2 and gunicorn deal; it runs only here. Under corral-rr and corral-least a worker that has read nothing of its channel for 25 ms is busy and what it has not read goes to the other worker; least also deals it one only while a healthy worker holds as many open. node:cluster rr deals only to a worker that acknowledged its last connection. Under the kernel policies connections wait in the worker\'s own accept queue; the program passes over a worker that left connections waiting there and took none for 25 ms (kernel-rr: in turn otherwise; kernel-least: by open connections otherwise), and the primary then takes back what that queue holds (from its copy of the socket) and deals it to the other worker, as rr reads back a channel.',
    get: (r) => r.skew?.latencyMs.p50,
    errors: (r) => r.skew?.errors,
    fmt: fixed(2),
  },
  {
    id: 'skewP99',
    title: 'Latency p99 in ms, skewed service times (lower is better)',
    how: 'same runs as the previous table; issue 14 expects least well below rr. The stalls themselves are about 1 request in 600 (0.17%): p99 counts them only when more requests waited behind them.',
    get: (r) => r.skew?.latencyMs.p99,
    errors: (r) => r.skew?.errors,
    fmt: fixed(2),
  },
  {
    id: 'skewSlow',
    title: 'Requests over 100 ms, skewed service times (lower is better)',
    how: 'same runs: how many requests (of about 4500) waited out most of a stall, the stalling ones included. p99 flips between a few ms and the stall when this count is near 1% of the requests; the count does not.',
    get: (r) => r.skew?.slowOver100Ms,
    errors: (r) => r.skew?.errors,
    fmt: int,
  },
  {
    id: 'primary',
    title: 'Primary CPU in cores during the `Connection: close` run (lower is better)',
    how: "the primary's time on a CPU over the run (its threads' /proc/<pid>/task/<tid>/schedstat, in ns; utime+stime, in 10 ms ticks, where that is missing), divided by the run's duration; n/a for single-process servers.",
    get: (r) => r.close?.primaryCores,
    fmt: fixed(3),
  },
  {
    id: 'primary8k',
    title: 'Primary CPU in cores at 8k conn/s (lower is better)',
    how: "a paced `Connection: close` run near the target rate (54 connections, each waiting 6 ms before each request: about 8k conn/s, the measured rate is in the next table), the primary's CPU per connection × 8000/s. Measured at the rate, because the cost per connection depends on it: at full load the primary takes more connections per wake-up but competes with wrk and the workers for the 2 CPUs.",
    get: (r) => (r.at8k?.primaryUsPerReq === undefined ? undefined : (r.at8k.primaryUsPerReq * 8000) / 1e6),
    fmt: fixed(3),
  },
  {
    id: 'rate8k',
    title: 'Connections/s of the paced run behind the previous table',
    how: 'the measured rate of that run.',
    get: (r) => r.at8k?.rate,
    errors: (r) => r.at8k?.errors,
    fmt: int,
  },
  {
    id: 'workerKeepalive',
    title: 'Worker CPU in µs per request, keep-alive (lower is better)',
    how: 'utime+stime summed over all workers during the keep-alive run, divided by the requests served.',
    get: (r) => r.keepalive?.workerUsPerReq,
    fmt: fixed(1),
  },
  {
    id: 'workerClose',
    title: 'Worker CPU in µs per connection, `Connection: close` (lower is better)',
    how: 'as above, in the `Connection: close` run (accept or receive the fd, parse, answer, close).',
    get: (r) => r.close?.workerUsPerReq,
    fmt: fixed(1),
  },
  {
    id: 'capacity',
    title: 'Server capacity: `Connection: close` connections per second per CPU core (higher is better)',
    how: "1 s / (primary + workers' CPU per connection) in the `Connection: close` run: the rate the server would sustain per core it gets. On this machine wrk takes part of the 2 cores, so throughput ratios are capped by wrk's share; this ratio is what carries over to a machine where the load comes from elsewhere.",
    get: (r) =>
      r.close?.workerUsPerReq === undefined ? undefined : 1e6 / ((r.close.primaryUsPerReq ?? 0) + r.close.workerUsPerReq),
    fmt: int,
  },
  {
    id: 'balance',
    title: 'Balance: per-worker requests max/min in the `Connection: close` run (1.00 is perfect)',
    how: 'each worker of bench/servers/node_hello.js counts its requests; the primary collects them over IPC. Only servers running that script report counts.',
    get: (r) => r.close?.balance,
    fmt: fixed(3),
  },
  {
    id: 'startup',
    title: 'Worker start in ms, fork() to listening (lower is better)',
    how: "measured in the primary of node_hello.js from just before `cluster.fork()` to the worker's `listening` event, mean of the 2 workers; once per round, on a fresh server.",
    get: (r) => r.startupMs,
    fmt: fixed(1),
  },
  {
    id: 'rss',
    title: 'Worker RSS in MiB, idle after start (lower is better)',
    how: 'VmRSS from /proc/<pid>/status of each worker right after the server reported ready, mean over workers.',
    get: (r) => r.workerRssMiB,
    fmt: fixed(1),
  },
];

// `withCI`: the median's 95 % confidence interval before the range (the head-to-head tables,
// whose many passes make one).
function ratioCell(values, anchorValues, isAnchor, withCI = false) {
  if (isAnchor) return 'anchor';
  if (!anchorValues) return '—';
  const r = pairedRatio(values, anchorValues);
  if (!r) return '—';
  if (r.min === r.max) return `×${r.median.toFixed(2)}`;
  const range = `${r.min.toFixed(2)}–${r.max.toFixed(2)}`;
  if (withCI && r.ci) return `×${r.median.toFixed(2)} (CI ${r.ci.lo.toFixed(2)}–${r.ci.hi.toFixed(2)}; ${range})`;
  return `×${r.median.toFixed(2)} (${range})`;
}

/** ✅/❌ text for one configuration's targets, or n/a with the reason. */
function targetCell(targets, cfg, values, samplesOf, fmt) {
  if (!targets) return '';
  if (cfg.status !== 'ok') return `n/a (${cfg.status})`;
  const parts = [];
  for (const t of targets) {
    const bound = t.atLeast !== undefined ? `≥ ${t.atLeast}×` : t.anchor ? `≤ ${t.atMost}×` : `≤ ${fmt(t.atMost)}`;
    if (t.anchor) {
      const anchorValues = samplesOf(t.anchor);
      const r = anchorValues && pairedRatio(values, anchorValues);
      if (!r) {
        parts.push(`n/a (no ${t.label ?? t.anchor})`);
        continue;
      }
      const ok = t.atLeast !== undefined ? r.median >= t.atLeast : r.median <= t.atMost;
      // The bound inside the median's 95 % interval: the passes do not settle the verdict, and
      // the cell says so.
      const b = t.atLeast ?? t.atMost;
      const unsure = r.ci && r.ci.lo < b && b < r.ci.hi ? ' (bound inside the CI)' : '';
      parts.push(`${ok ? '✅' : '❌'} ×${r.median.toFixed(2)} ${bound} ${t.label ?? t.anchor}${unsure}`);
    } else {
      const s = summary(values);
      if (!s) {
        parts.push('n/a (not measured)');
        continue;
      }
      parts.push(`${s.median <= t.atMost ? '✅' : '❌'} ${bound}`);
    }
  }
  return parts.join('; ');
}

function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function httpSection(metric, results) {
  const samplesOf = (name) => {
    const c = results.http[name];
    return c && c.status === 'ok' ? c.rounds.map((r) => (r ? metric.get(r) : undefined)) : null;
  };
  const targets = TARGETS[metric.id] ?? {};
  let warned = false;
  let bound = false;
  // A skew-only configuration (corral-rr-blind) has rows in the skew tables only.
  const shown = Object.entries(results.http).filter(([, cfg]) => !cfg.skewOnly || metric.id.startsWith('skew'));
  const rows = shown.map(([name, cfg]) => {
    const t = targetCell(targets[name], cfg, samplesOf(name) ?? [], samplesOf, metric.fmt);
    if (cfg.status !== 'ok') return [name, cfg.status, '', '', '', '', t];
    const values = samplesOf(name);
    const s = summary(values);
    if (!s) return [name, 'n/a', '', '', '', '', t];
    const hadErrors = metric.errors && cfg.rounds.some((r) => r && metric.errors(r) > 0);
    warned ||= hadErrors;
    const wrkCores = metric.wrk && summary(cfg.rounds.map((r) => (r ? metric.wrk(r) : undefined)));
    const wrkBound = wrkCores && wrkCores.median >= WRK_BOUND;
    bound ||= wrkBound;
    return [
      name,
      metric.fmt(s.median) + (hadErrors ? ' ⚠' : '') + (wrkBound ? ' †' : ''),
      metric.fmt(s.min),
      metric.fmt(s.max),
      ratioCell(values, samplesOf(ANCHOR), name === ANCHOR),
      ratioCell(values, samplesOf(C_ANCHOR), name === C_ANCHOR),
      cfg.failedRounds ? `${t} (${cfg.failedRounds} round(s) failed)`.trim() : t,
    ];
  });
  const header = ['configuration', 'median', 'min', 'max', `vs ${ANCHOR}`, `vs ${C_ANCHOR}`, 'target'];
  const out = [`### ${metric.title}`, '', metric.how, '', table(header, rows)];
  if (warned) out.push('', '⚠ wrk reported socket errors or non-2xx answers in at least one round (counts in raw/results.json).');
  if (bound) out.push('', wrkBoundNote);
  return out.join('\n');
}

const wrkBoundNote =
  `† wrk's one thread was busy ${WRK_BOUND * 100} % of the run or more (median over rounds; its own CPU time, from os.clock() in wrk.lua): ` +
  'the server answered as fast as wrk asked, and the rate is the load generator\'s limit, not the server\'s.';

// The two head-to-head runs (bench/lib/measure.js headToHead): where their samples are, the
// anchors their ratios are taken to, their targets and their titles.
const H2H = {
  c: {
    results: 'h2h',
    anchors: [C_ANCHOR],
    targets: { close: 'h2hClose', keepalive: 'h2hKeepalive' },
    who: 'C servers against nginx',
    why:
      'Why not the tables of the rounds: one wrk thread is slower than these servers (wrk near a whole core, †), so there the rate is wrk\'s. ' +
      'With two threads the cores are all busy (idle below), and what a server does not spend per connection is left to wrk. And ',
  },
  node: {
    results: 'nodeH2h',
    anchors: [ANCHOR, 'node-cluster-none'],
    targets: { close: 'nodeH2hClose', keepalive: 'nodeH2hKeepalive' },
    who: 'Node servers',
    why: 'One wrk thread, as in the rounds: the Node workers, not wrk, are the limit (wrk cores below). The Node targets are read here, not in the rounds: ',
  },
};

/**
 * One head-to-head run (`which`: 'c' or 'node', see H2H) as a table: rates, the ratio to each
 * anchor within each pass, how busy wrk and the machine were, and the targets; `kind` is
 * 'close' or 'keepalive'.
 */
function h2hSection(results, which, kind) {
  const w = H2H[which];
  const h = results[w.results];
  const s = results.meta.settings[w.results];
  const close = kind === 'close';
  const how =
    `wrk -t${s.threads} -c${results.meta.settings.connections}${close ? " -H 'Connection: close'" : ', keep-alive connections'}, ${s.seconds} s per run. ` +
    (close
      ? `Every one of these servers runs at once (one not under load waits in epoll); in each of ${s.passes} passes each gets one run of each kind, ` +
        'in an order reversed every other pass, and a ratio is taken within a pass (median over passes; in parentheses the median\'s 95 % confidence interval, distribution-free from the order statistics, then the range). ' +
        w.why +
        'runs seconds apart share the machine\'s state, and on this VM the CPU\'s speed drifts by tens of percent from one minute to the next, while the runs of one round are minutes apart.'
      : 'The same passes as the previous table: each server\'s keep-alive run follows its `Connection: close` run.');
  const get = (r) => r?.[kind];
  const samplesOf = (name) => {
    const c = h[name];
    return c && c.status === 'ok' ? c.rounds.map((r) => get(r)?.rate) : null;
  };
  const pct = (x) => `${(x * 100).toFixed(0)} %`;
  const targets = TARGETS[w.targets[kind]];
  const rows = Object.entries(h).map(([name, cfg]) => {
    const t = targetCell(targets[name], cfg, samplesOf(name) ?? [], samplesOf, int);
    const values = samplesOf(name);
    const r = values && summary(values);
    const blank = w.anchors.map(() => '');
    if (!r) return [name, cfg.status === 'ok' ? 'n/a' : cfg.status, '', '', ...blank, '', '', t];
    const errs = cfg.rounds.some((x) => get(x)?.errors > 0);
    const wrk = summary(cfg.rounds.map((x) => get(x)?.wrkCores));
    const idle = summary(cfg.rounds.map((x) => get(x)?.idle));
    return [
      name,
      int(r.median) + (errs ? ' ⚠' : ''),
      int(r.min),
      int(r.max),
      ...w.anchors.map((a) => ratioCell(values, samplesOf(a), name === a, true)),
      wrk ? wrk.median.toFixed(2) : 'n/a',
      idle ? pct(idle.median) : 'n/a',
      cfg.failedRounds ? `${t} (${cfg.failedRounds} pass(es) failed)`.trim() : t,
    ];
  });
  const header = ['configuration', 'median', 'min', 'max', ...w.anchors.map((a) => `vs ${a}`), 'wrk cores', 'machine idle', 'target'];
  const threads = `${s.threads === 1 ? 'one wrk thread' : `${s.threads === 2 ? 'two' : s.threads} wrk threads`}`;
  const title = close
    ? `Connections/s, \`Connection: close\`, ${w.who} head to head, ${threads} (higher is better)`
    : `Requests/s, keep-alive, ${w.who} head to head, ${threads} (higher is better)`;
  return [`### ${title}`, '', how, '', table(header, rows)].join('\n');
}

// `streaming`: the up/down rows (target: 2x node:cluster, issue 12), else the ping-pong rows
// (issue 12: no worse than node:cluster; issue 6 asked 3x of every IPC row, and stays shown:
// one message in flight is two wake-ups per round trip on either side, which no encoding
// removes).
function ipcSection(results, streaming) {
  const rows = [];
  for (const [key, cfg] of Object.entries(results.ipc)) {
    const mode = cfg.mode || 'pingpong';
    if ((mode !== 'pingpong') !== streaming) continue;
    const values = cfg.status === 'ok' ? cfg.rounds.map((r) => r?.msgsPerSec) : [];
    const anchorCfg = results.ipc[cfg.anchorKey];
    const anchorValues = anchorCfg?.status === 'ok' ? anchorCfg.rounds.map((r) => r?.msgsPerSec) : null;
    const isAnchor = key === cfg.anchorKey;
    const target =
      cfg.family === 'corral'
        ? targetCell(
            streaming
              ? [{ anchor: cfg.anchorKey, label: 'node:cluster', atLeast: 2 }]
              : [
                  { anchor: cfg.anchorKey, label: 'node:cluster (issue 12)', atLeast: 1 },
                  { anchor: cfg.anchorKey, label: 'node:cluster (issue 6)', atLeast: 3 },
                ],
            cfg,
            values,
            () => anchorValues,
            int,
          )
        : '';
    const label = [
      cfg.module,
      ...(streaming ? [mode === 'up' ? 'worker → primary' : 'primary → worker'] : []),
      cfg.serialization,
      cfg.bytes === 64 ? '64 B' : `${cfg.bytes / 1024} KiB`,
    ];
    const s = summary(values);
    if (cfg.status !== 'ok' || !s) rows.push([...label, cfg.status === 'ok' ? 'n/a' : cfg.status, '', '', '', target]);
    else {
      rows.push([
        ...label,
        int(s.median),
        int(s.min),
        int(s.max),
        ratioCell(values, anchorValues, isAnchor),
        cfg.failedRounds ? `${target} (${cfg.failedRounds} round(s) failed)`.trim() : target,
      ]);
    }
  }
  const head = ['module', ...(streaming ? ['direction'] : []), 'serialization', 'payload'];
  return table([...head, 'median', 'min', 'max', 'vs node:cluster', 'target'], rows);
}

const NOISY = 0.25; // cores taken by other processes above which a round is flagged

const roundsOf = (results) =>
  [...Object.entries(results.http), ...Object.entries(results.ipc)].filter(([, c]) => c.status === 'ok');

function noiseSummary(results) {
  const all = roundsOf(results).flatMap(([, c]) => c.rounds.map((r) => r?.otherCores));
  const s = summary(all);
  if (!s) return '';
  const noisy = all.filter((x) => x > NOISY).length;
  return (
    `Other processes took ${s.median.toFixed(2)} core (median over measurements), at most ${s.max.toFixed(2)}` +
    (noisy ? `: ${noisy} of ${s.n} measurements competed with other work (see "Noise" at the end).` : '.')
  );
}

function noiseSection(results) {
  const entries = roundsOf(results);
  const n = Math.max(0, ...entries.map(([, c]) => c.rounds.length));
  const cell = (r) => (r ? `${r.otherCores.toFixed(2)}${r.otherCores > NOISY ? ' ⚠' : ''}` : 'failed');
  const rows = entries.map(([name, c]) => [name, ...Array.from({ length: n }, (_, i) => cell(c.rounds[i]))]);
  return table(['measurement', ...Array.from({ length: n }, (_, i) => `round ${i + 1}`)], rows);
}

function leakSection(results) {
  const rows = Object.entries(results.leaks).map(([name, l]) => {
    if (l.status !== 'ok') return [name, l.status, '', '', '', '', ''];
    const dRss = l.after.rssMiB - l.before.rssMiB;
    return [
      name,
      l.process,
      int(l.connections) + (l.errors ? ' ⚠' : ''),
      `${l.before.fds} → ${l.after.fds}`,
      `${l.after.fds - l.before.fds >= 0 ? '+' : ''}${l.after.fds - l.before.fds}`,
      `${l.before.rssMiB.toFixed(1)} → ${l.after.rssMiB.toFixed(1)}`,
      `${dRss >= 0 ? '+' : ''}${dRss.toFixed(1)}`,
    ];
  });
  return table(['configuration', 'process', 'connections', 'fds before → after', 'Δ fds', 'RSS MiB before → after', 'Δ RSS MiB'], rows);
}

/** The whole report as markdown. */
function render(results) {
  const m = results.meta;
  const s = m.settings;
  const out = [
    '# corral benchmarks',
    '',
    `Produced by \`${m.command}\` on ${m.date} (${m.durationS} s).`,
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.kernel}; Node ${m.node}; ${m.wrk}; ${m.nginx}; git ${m.git}.`,
    noiseSummary(results),
    '',
    `${s.rounds} round${s.rounds === 1 ? '' : 's'}; in each round every configuration runs once, in an order rotated by one per round, on a fresh server: ` +
      `${s.warmupSeconds} s warm-up, then ${s.seconds} s measured, per load run. ` +
      'median/min/max are over rounds; a ratio is the median of the per-round ratios to the anchor (range in parentheses). ' +
      'Compare ratios only within one run: on 2 cores wrk competes with the server, so absolute numbers move with the machine.',
    '',
    '## HTTP (2 workers answering "hello\\n" on 127.0.0.1)',
    '',
    `Latency: ${s.paced.connections} connections, each waiting ${s.paced.paceMs} ms before each request ` +
      `(at most ${int((s.paced.connections * 1000) / s.paced.paceMs)} conn/s, well under every configuration's capacity; ` +
      `measured rate, median over all runs: ${int(results.pacedRate ?? 0)} conn/s), \`Connection: close\`, wrk --latency percentiles. ` +
      'wrk waits for each response before the next request on a connection (closed loop), so at this load the percentiles are ' +
      'those of service and dispatch time, not of a queue.',
    '',
  ];
  for (const metric of HTTP_METRICS) {
    out.push(httpSection(metric, results), '');
    if (metric.id !== 'closePinned') continue;
    for (const which of ['node', 'c']) {
      if (results[H2H[which].results]) out.push(h2hSection(results, which, 'close'), '', h2hSection(results, which, 'keepalive'), '');
    }
  }
  out.push(
    `## Leaks: ${int(s.leakConnections)} connections with \`Connection: close\``,
    '',
    "Open fds (/proc/<pid>/fd) and VmRSS of the primary (of the process itself for single-process servers) after a warm-up, " +
      'then after the connections and 1 s of quiet. Once per configuration, not per round. A growing fd count is a leak; ' +
      'RSS moves with the garbage collector and allocator, so only a large growth means something.',
    '',
    leakSection(results),
    '',
    '## IPC: primary → worker → primary ping-pong',
    '',
    `bench/servers/node_ipc.js: one worker echoes every message, one message in flight; messages/s counts both directions. ` +
      `Payload \`{seq, data}\` with \`data\` a string of the given size. ${s.ipcWarmupMs} ms warm-up, then ${s.ipcMaxMs} ms measured.`,
    '',
    ipcSection(results, false),
    '',
    '## IPC: streaming',
    '',
    'bench/servers/node_ipc.js with BENCH_IPC_MODE=up (a worker sends to the primary) or down (the primary sends to a worker): ' +
      'the sender sends as fast as send() lets it, with at most 256 messages written-but-unconfirmed (the send callback), and the receiver counts. ' +
      `Payload \`{seq, data}\` with \`data\` a 64-character string. ${s.ipcWarmupMs} ms warm-up, then ${s.ipcMaxMs} ms measured.`,
    '',
    ipcSection(results, true),
    '',
    '## Noise: CPU taken by other processes, in cores, per round',
    '',
    '(CPU time of every user-space process that is neither bench/run nor started by it, from /proc/<pid>/stat, ' +
      `over the round; a round above ${NOISY} core competed with other work and is less trustworthy)`,
    '',
    noiseSection(results),
    '',
  );
  return out.join('\n');
}

module.exports = { render };
