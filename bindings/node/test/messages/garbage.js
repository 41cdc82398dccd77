'use strict';
// A worker that writes garbage on its message channel (the fd corral passes in
// CORRAL_MESSAGE_FD, taken before corral reads it): the primary reports an 'error' on that
// worker with ERR_CORRAL_PROTOCOL and cuts it off (it sees its channel end and exits 0, as a
// node:cluster worker whose channel drops), and keeps serving the others.
const fd = Number(process.env.CORRAL_MESSAGE_FD);
const cluster = require(process.env.CORRAL_MODULE);
const fs = require('node:fs');
if (cluster.isPrimary) {
  const bad = cluster.fork({ ROLE: 'bad' });
  bad.on('error', (e) => console.log(`bad worker error: ${e.code}`));
  bad.on('message', (m) => console.log(`bad worker message (unexpected): ${JSON.stringify(m)}`));
  bad.on('exit', (code, signal) => {
    console.log(`bad worker exit ${code} ${signal}`);
    const good = cluster.fork({ ROLE: 'good' });
    good.on('message', (m) => {
      console.log(`good worker says: ${m}`);
      good.disconnect();
    });
  });
  process.on('exit', () => console.log('primary exits'));
} else if (process.env.ROLE === 'bad') {
  if (Number.isInteger(fd) && fd > 0) fs.writeSync(fd, Buffer.from('definitely not a frame'));
  setInterval(() => {}, 1000);
} else {
  process.send('hello');
}
