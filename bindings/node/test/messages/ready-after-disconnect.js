'use strict';
// cluster.worker.ready() (a corral extra) after the worker disconnected throws
// ERR_IPC_CHANNEL_CLOSED, as a send does in node:cluster, instead of an engine error (or, in
// the engine, an OK whose message was dropped). Before the disconnect it goes through.
const cluster = require(process.env.CORRAL_MODULE);
if (cluster.isPrimary) {
  const w = cluster.fork();
  w.on('exit', (code) => console.log(`exit ${code}`));
} else {
  const attempt = (when) => {
    try {
      cluster.worker.ready();
      console.log(`ready ${when}: ok`);
    } catch (e) {
      console.log(`ready ${when}: ${e.code} ${e.message}`);
    }
  };
  attempt('before disconnect');
  process.disconnect();
  attempt('after disconnect');
}
