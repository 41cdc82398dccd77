// The installed package's ESM entry: default and named imports, one worker, a message each way.
import cluster, { isPrimary, fork } from 'corral';

if (isPrimary) {
  const w = fork();
  w.on('online', () => w.send('ping'));
  w.on('message', (m) => {
    console.log(`esm: ${m} default=${cluster.isPrimary}`);
    w.disconnect();
  });
  w.on('exit', (code, signal) => console.log(`esm: exit ${code} ${signal}`));
} else {
  process.on('message', (m) => process.send(`pong ${m}`));
}
