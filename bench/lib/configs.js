'use strict';
// The configurations bench/run compares, and how to start each one. Every server has 2 workers
// (except node-single), listens on 127.0.0.1 and answers "hello\n".

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { Guarded, sleep, within } = require('./guard');

const ROOT = path.resolve(__dirname, '../..');
const NODE_HELLO = path.join(ROOT, 'bench/servers/node_hello.js');
const NODE_IPC = path.join(ROOT, 'bench/servers/node_ipc.js');
const CORRAL_INDEX = path.join(ROOT, 'bindings/node/index.js');
const C_HELLO = path.join(ROOT, 'target/c/hello_http');
const READY_MS = 15_000;

/**
 * Null when the Node addon is built for this machine (index.js plus corral.<target>.node next
 * to it, as `npm run build` leaves it), else why not.
 */
function corralMissing() {
  const dir = path.dirname(CORRAL_INDEX);
  let addon;
  try {
    const { addonFile, hostPlatform, targetOf } = require(path.join(dir, 'lib', 'loader.js'));
    addon = addonFile(targetOf(hostPlatform()));
  } catch {
    return 'not built';
  }
  return fs.existsSync(CORRAL_INDEX) && fs.existsSync(path.join(dir, addon)) ? null : `not built (no bindings/node/${addon})`;
}

function cHelloMissing() {
  try {
    fs.accessSync(C_HELLO, fs.constants.X_OK);
    return null;
  } catch {
    return 'not built';
  }
}

/** process.env without the knobs of the other configurations (they must not leak in). */
function cleanEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(BENCH_|CORRAL_SCHED_POLICY$|NODE_CLUSTER_SCHED_POLICY$)/.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

// `more`: extra environment for one start (the skewed-service run sets BENCH_SKEW).
const nodeHello = (extraEnv) => ({
  kind: 'node',
  start: (log, more = {}) => startNodeHello({ ...extraEnv, ...more }, log),
});

const corralHello = (policy, extraEnv = {}) => ({
  kind: 'node',
  family: 'corral',
  missing: corralMissing,
  start: (log, more = {}) =>
    startNodeHello({ BENCH_CLUSTER_MODULE: CORRAL_INDEX, CORRAL_SCHED_POLICY: policy, ...extraEnv, ...more }, log),
});

const cHello = (policy) => ({
  kind: 'c',
  family: 'corral',
  missing: cHelloMissing,
  start: (log) => startCHello(policy, log),
});

/** HTTP configurations, in the order of the report. */
function httpConfigs({ nginxPath }) {
  return [
    { name: 'node-single', ...nodeHello({ BENCH_WORKERS: '0' }) },
    { name: 'node-cluster-rr', skew: true, ...nodeHello({ NODE_CLUSTER_SCHED_POLICY: 'rr' }) },
    { name: 'node-cluster-none', ...nodeHello({ NODE_CLUSTER_SCHED_POLICY: 'none' }) },
    { name: 'corral-rr', skew: true, ...corralHello('rr') },
    { name: 'corral-shared', ...corralHello('shared') },
    // The kernel deals (SO_REUSEPORT + eBPF); without CAP_BPF these run rr, and the server's
    // stderr (run.log) carries the CORRAL_KERNEL_RR_FALLBACK warning.
    { name: 'corral-kernel-rr', skew: true, ...corralHello('kernel-rr') },
    // The kernel picks the worker with the fewest open connections (least without CAP_BPF).
    { name: 'corral-kernel-least', skew: true, ...corralHello('kernel-least') },
    // Sticky by key, a random cookie per request (wrk.lua): wrk connects from 127.0.0.1 only,
    // so sticky by address would send everything to one worker. The key path peeks at the
    // request (MSG_PEEK), the dearest sticky path: by address costs at most as much.
    { name: 'corral-sticky', stickyCookie: 'sid', ...corralHello('sticky', { BENCH_STICKY_COOKIE: 'sid' }) },
    { name: 'corral-least', skew: true, ...corralHello('least') },
    // rr with its stall check off (CORRAL_STALL_TIMEOUT_MS=0): round-robin blind to a stuck
    // worker, as issue 14 describes rr (and as PM2's and gunicorn's dealing is). Only the skew
    // run: everywhere else it is corral-rr.
    { name: 'corral-rr-blind', skew: true, skewOnly: true, ...corralHello('rr', { CORRAL_STALL_TIMEOUT_MS: '0' }) },
    { name: 'c-hello-rr', ...cHello('rr') },
    { name: 'c-hello-shared', ...cHello('shared') },
    { name: 'c-hello-kernel-rr', ...cHello('kernel-rr') },
    { name: 'c-hello-kernel-least', ...cHello('kernel-least') },
    {
      name: 'nginx',
      kind: 'nginx',
      missing: () => (nginxPath ? null : 'not installed'),
      start: (log) => startNginx(nginxPath, log),
    },
  ];
}

/** IPC configurations: one per cluster module, each run with both serializations and sizes. */
function ipcModules() {
  return [
    { name: 'node:cluster', module: 'node:cluster' },
    { name: 'corral', module: CORRAL_INDEX, family: 'corral', missing: corralMissing },
  ];
}

/**
 * A started server: {url, guarded, counts (node_hello only), startupMs (node cluster only)}.
 * `stop()` stops it and everything it started.
 */
async function startNodeHello(extraEnv, log) {
  const env = cleanEnv({ BENCH_EXIT_ON_EOF: '1', ...extraEnv });
  const g = new Guarded('server', process.execPath, [NODE_HELLO], { env, log });
  try {
    const m = await g.waitForLine(/^listening (\d+)$/, READY_MS, '`listening <port>`');
    const startup = g.lines.find((l) => l.startsWith('startup '));
    return {
      url: `http://127.0.0.1:${m[1]}/`,
      guarded: g,
      startupMs: startup ? JSON.parse(startup.slice(8)).map((w) => w.ms) : null,
      counts: async () => {
        const from = g.lines.length;
        g.send('counts');
        return JSON.parse((await g.waitForLine(/^counts (.*)$/, 3000, '`counts`', from))[1]);
      },
      resetCounts: () => g.send('reset'),
      stop: () => g.stop(),
    };
  } catch (err) {
    await g.stop();
    throw err;
  }
}

async function startCHello(policy, log) {
  const args = ['--workers', '2', '--port', '0', '--policy', policy];
  const g = new Guarded('server', C_HELLO, args, { env: cleanEnv({}), log });
  try {
    const m = await g.waitForLine(/listening on 127\.0\.0\.1:(\d+)/, READY_MS, '`listening on 127.0.0.1:<port>`');
    return { url: `http://127.0.0.1:${m[1]}/`, guarded: g, stop: () => g.stop() };
  } catch (err) {
    await g.stop();
    throw err;
  }
}

async function startNginx(nginxPath, log) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'corral-bench-nginx-'));
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, nginxConf(dir, port));
  const errorLog = path.join(dir, 'error.log');
  const cleanup = () => {
    if (fs.existsSync(errorLog)) g.writeLog(`[nginx error.log]\n${fs.readFileSync(errorLog, 'utf8')}`);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const args = ['-p', dir, '-c', conf, '-e', errorLog];
  let g;
  try {
    g = new Guarded('server', nginxPath, args, { env: cleanEnv({}), log, cleanup });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const stop = () => g.stop();
  try {
    await waitForPort(port, g, READY_MS);
    // The master accepts nothing itself: wait until both workers exist too.
    const deadline = Date.now() + READY_MS;
    while (g.tree().length < 2) {
      if (Date.now() > deadline) throw new Error('nginx: fewer than 2 worker processes');
      await sleep(25);
    }
    return { url: `http://127.0.0.1:${port}/`, guarded: g, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function nginxConf(dir, port) {
  // keepalive_requests: nginx closes a keep-alive connection after 1000 requests by default,
  // Node never does; lift the limit so both serve keep-alive the same way.
  return `worker_processes 2;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:${port};
    location / {
      default_type text/plain;
      return 200 "hello\\n";
    }
  }
}
`;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port, g, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (g.exit) throw new Error(`nginx exited (code ${g.exit.code}) before listening; see the raw log`);
    const ok = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.on('connect', () => (c.destroy(), resolve(true)));
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nginx: port ${port} not accepting within ${ms} ms`);
    await sleep(50);
  }
}

/** Runs node_ipc.js once and returns its `ipc` result. */
async function runIpc({ module, mode, serialization, bytes, warmupMs, maxMs, log }) {
  const env = cleanEnv({
    BENCH_CLUSTER_MODULE: module,
    BENCH_IPC_MODE: mode,
    BENCH_IPC_SERIALIZATION: serialization,
    BENCH_IPC_BYTES: String(bytes),
    BENCH_IPC_WARMUP_MS: String(warmupMs),
    BENCH_IPC_MAX_MS: String(maxMs),
  });
  const g = new Guarded('ipc', process.execPath, [NODE_IPC], { env, log });
  try {
    const m = await g.waitForLine(/^ipc (.*)$/, warmupMs + maxMs + READY_MS, 'its `ipc` result');
    await within(g.exited, 3000); // it stops its worker and exits by itself
    return JSON.parse(m[1]);
  } finally {
    await g.stop();
  }
}

module.exports = { ROOT, httpConfigs, ipcModules, runIpc };
