// A Node server that knows nothing of corral: it listens on the inherited fd 3 (systemd's
// LISTEN_FDS protocol) and, on SIGTERM, stops accepting and exits once its requests are done
// (what every Node server deployed under systemd or Kubernetes does).
'use strict';
const http = require('node:http');
if (process.env.LISTEN_PID !== String(process.pid)) {
  console.error(`LISTEN_PID ${process.env.LISTEN_PID} is not my pid ${process.pid}`);
  process.exit(1);
}
const me = `pid=${process.pid} worker=${process.env.CORRAL_WORKER_ID}`;
const server = http.createServer((req, res) => {
  res.setHeader('Connection', 'close');
  res.end(me);
});
server.listen({ fd: 3 });
process.on('SIGTERM', () => server.close(() => process.exit(0)));
