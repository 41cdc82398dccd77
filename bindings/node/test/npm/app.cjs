// The installed package's CommonJS entry: one worker, a message each way, a clean exit.
const cluster = require('corral');

if (cluster.isPrimary) {
  const w = cluster.fork();
  w.on('online', () => w.send('ping'));
  w.on('message', (m) => {
    console.log(`cjs: ${m}`);
    w.disconnect();
  });
  w.on('exit', (code, signal) => console.log(`cjs: exit ${code} ${signal}`));
} else {
  process.on('message', (m) => process.send(`pong ${m}`));
}
