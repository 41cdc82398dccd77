'use strict';
// Scenario: a worker's stdout. By default a worker shares the primary's stdout (what it prints
// shows up in the primary's output, even though Node marks its own stdio close-on-exec); with
// `silent: true` it goes to a pipe the primary reads from `worker.process.stdout`, and with
// `stdio` an explicit 'ignore' drops it. Workers run one after another so the lines are in a
// fixed order.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));

  const runs = [
    { label: 'inherited', settings: {} },
    { label: 'silent', settings: { silent: true } },
    { label: 'ignored', settings: { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] } },
  ];
  const next = () => {
    const run = runs.shift();
    if (!run) return;
    cluster.setupPrimary({ ...run.settings, silent: !!run.settings.silent });
    const w = cluster.fork({ LABEL: run.label });
    let piped = '';
    const streams = `stdout=${w.process.stdout ? 'stream' : 'null'} stderr=${w.process.stderr ? 'stream' : 'null'}`;
    if (w.process.stdout) w.process.stdout.setEncoding('utf8').on('data', (d) => { piped += d; });
    // With a pipe, 'exit' can come before the last data: wait for the stream's end too.
    const ended = w.process.stdout
      ? new Promise((resolve) => w.process.stdout.on('end', resolve))
      : Promise.resolve();
    const exited = new Promise((resolve) => w.on('exit', (code) => resolve(code)));
    Promise.all([exited, ended]).then(([code]) => {
      console.log(`primary: ${run.label} worker ${w.id} exit ${code}, ${streams}, read from its pipe: ${JSON.stringify(piped)}`);
      next();
    });
  };
  next();
} else {
  const label = process.env.LABEL;
  console.log(`worker ${cluster.worker.id} (${label}): console.log`);
  process.stdout.write(`worker ${cluster.worker.id} (${label}): process.stdout.write\n`, () => {
    cluster.worker.disconnect();
  });
}
