'use strict';
// One worker serves a TCP and a unix-socket server; the primary reads one answer from each and
// exits. Run with NODE_OPTIONS='--pending-deprecation --throw-deprecation' (the workers inherit
// it): a deprecated API used by the cluster module kills the worker or prints a warning.
// CORRAL_MODULE selects corral, NODE_CLUSTER_SCHED_POLICY rr or none, SOCK the unix path.
const cluster = require(process.env.CORRAL_MODULE || 'node:cluster');
const net = require('node:net');

if (cluster.isPrimary) {
  setTimeout(() => {
    console.log('TIMEOUT');
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
    process.exit(99);
  }, 15_000).unref();
  const worker = cluster.fork();
  const targets = [];
  worker.on('listening', (a) => {
    targets.push(a.addressType === -1 ? { path: a.address } : { host: '127.0.0.1', port: a.port });
    if (targets.length < 2) return;
    Promise.all(targets.map((to) => new Promise((resolve, reject) => {
      let got = '';
      net.connect(to).setEncoding('utf8').on('data', (d) => { got += d; })
        .on('end', () => resolve(got)).on('error', reject);
    }))).then((answers) => {
      console.log(answers.sort().join(', '));
      worker.on('exit', (code, signal) => console.log(`worker exit ${code} ${signal}`));
      cluster.disconnect();
    }, (e) => {
      console.log(`request failed: ${e.code}`);
      process.exit(1);
    });
  });
  worker.on('exit', (code, signal) => {
    if (targets.length < 2) console.log(`worker died before listening: ${code} ${signal}`);
  });
} else {
  net.createServer((s) => s.end('tcp ok')).listen(0, '127.0.0.1');
  net.createServer((s) => s.end('pipe ok')).listen(process.env.SOCK);
}
