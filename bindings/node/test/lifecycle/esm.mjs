// The ESM entry: default and named imports, as with node:cluster.
import cluster, { isPrimary, fork } from 'corral';

if (isPrimary) {
  const w = fork();
  w.on('message', (m) => {
    console.log(`esm: ${m} default=${cluster.isPrimary}`);
    w.kill();
  });
} else {
  process.send('hello');
}
