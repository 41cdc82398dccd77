'use strict';
// The scripts' own deadline: past it they print TIMEOUT, SIGKILL their workers and exit 99, so
// a hang fails its test with a line of output instead of the runner's timeout.
module.exports = function watchdog(cluster, ms) {
  return setTimeout(() => {
    console.log('TIMEOUT');
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGKILL');
    process.exit(99);
  }, ms);
};
