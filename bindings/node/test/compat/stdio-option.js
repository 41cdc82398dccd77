'use strict';
// Scenario: setupPrimary({ stdio }) follows child_process.fork(). A string means three of it
// plus 'ipc' ('pipe' gives three duplex pipes); an array needs exactly one 'ipc' and may be
// longer than 3: entry i is the worker's fd i and worker.process.stdio[i] the primary's end of
// a 'pipe' entry (readable and writable, like stdout and stderr; stdin is write-only); numbers,
// { fd } objects and streams give the worker a copy of that fd of the primary, and the primary
// stops reading a stream it gave away. Bad settings throw from fork() (which spends an id).
// 'close' comes after 'exit' and the end of every piped stream. Runs are sequential.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const fs = require('node:fs');
const net = require('node:net');

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  process.on('exit', (code) => console.log(`primary exit ${code}`));
  const describe = (stdio) => `[${stdio.map((s) => (s ? `socket(r=${s.readable},w=${s.writable})` : String(s))).join(', ')}]`;
  const readAll = (s) => new Promise((resolve) => {
    let text = '';
    s.setEncoding('utf8').on('data', (d) => { text += d; }).on('end', () => resolve(text));
  });
  const closed = (w) => new Promise((resolve) => {
    const seen = [];
    w.process.on('exit', () => seen.push('exit'));
    w.process.on('close', (code) => resolve(`close after exit: ${seen.includes('exit')}, code ${code}`));
  });

  const refused = () => {
    // Far above any fd the primary has open.
    const notOpen = 1000 + process.pid % 1000;
    const tries = [
      ['no ipc', ['pipe', 'pipe', 'pipe']],
      ['two ipc', [0, 1, 2, 'ipc', 'ipc']],
      ['bad string', 'foo'],
      ['string entry', [0, 1, 2, 'ipc', 'abc']],
      ['object entry', [0, 1, 2, 'ipc', { a: 1 }]],
      ['fd not open', [0, 1, 2, 'ipc', notOpen]],
    ];
    for (const [label, stdio] of tries) {
      cluster.setupPrimary({ stdio });
      try {
        const w = cluster.fork();
        console.log(`${label}: forked worker ${w.id}?!`);
      } catch (e) {
        const os = e.syscall ? ` (errno ${e.errno}, syscall ${e.syscall})` : '';
        console.log(`${label}: ${e.name} ${e.code}: ${e.message.replace(String(notOpen), 'N')}${os}`);
      }
    }
  };

  const pipeString = async () => {
    cluster.setupPrimary({ stdio: 'pipe' });
    const w = cluster.fork({ RUN: 'pipe-string' });
    console.log(`'pipe': worker ${w.id}, stdio ${describe(w.process.stdio)}, ` +
      `stdin/stdout/stderr are stdio[0-2] ${w.process.stdin === w.process.stdio[0] && w.process.stdout === w.process.stdio[1] && w.process.stderr === w.process.stdio[2]}`);
    const close = closed(w);
    const [out, err] = [readAll(w.process.stdout), readAll(w.process.stderr)];
    w.process.stdin.end('to stdin\n');
    console.log(`'pipe': worker stdout ${JSON.stringify(await out)}, stderr ${JSON.stringify(await err)}`);
    console.log(`'pipe': ${await close}`);
  };

  const extraPipes = async () => {
    const stdio = ['ignore', 'pipe', 'inherit', 'ipc', 'pipe', 'ignore', 'pipe'];
    cluster.setupPrimary({ stdio });
    const w = cluster.fork({ RUN: 'extra-pipes' });
    console.log(`extra pipes: stdio ${describe(w.process.stdio)}`);
    const close = closed(w);
    const report = new Promise((resolve) => w.once('message', resolve));
    const [out, four, six] = [readAll(w.process.stdout), readAll(w.process.stdio[4]), readAll(w.process.stdio[6])];
    w.process.stdio[4].end('ping\n');
    console.log(`extra pipes: worker says ${JSON.stringify(await report)}`);
    console.log(`extra pipes: from fd 4 ${JSON.stringify(await four)}, fd 6 ${JSON.stringify(await six)}, stdout ${JSON.stringify(await out)}`);
    console.log(`extra pipes: ${await close}`);
  };

  const primaryFds = async () => {
    // A TCP connection of the primary's, given to the worker as fd 4; the primary's stdout as a
    // number (fd 5) and as { fd } (fd 6).
    const server = net.createServer();
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect(server.address().port, '127.0.0.1');
    const accepted = await new Promise((resolve) => server.once('connection', resolve));
    cluster.setupPrimary({ stdio: [0, 1, 2, 'ipc', accepted, 1, { fd: 1 }] });
    const w = cluster.fork({ RUN: 'primary-fds' });
    console.log(`primary fds: stdio ${describe(w.process.stdio)}`);
    const fromWorker = readAll(client);
    await new Promise((resolve) => w.once('message', resolve));
    client.write('from the client\n');
    console.log(`primary fds: the client read ${JSON.stringify(await fromWorker)}`);
    await new Promise((resolve) => w.on('exit', resolve));
    accepted.destroy();
    client.destroy();
    server.close();
  };

  (async () => {
    refused();
    await pipeString();
    await extraPipes();
    await primaryFds();
    cluster.setupPrimary({ stdio: 'ignore' });
    const w = cluster.fork({ RUN: 'quiet' });
    console.log(`'ignore': stdio ${describe(w.process.stdio)}`);
    await new Promise((resolve) => w.on('exit', resolve));
  })();
} else {
  const kind = (fd) => {
    try {
      const st = fs.fstatSync(fd);
      return st.isSocket() ? 'socket' : st.isCharacterDevice() ? 'char device' : st.isFIFO() ? 'fifo' : 'file';
    } catch (e) {
      return e.code;
    }
  };
  const run = process.env.RUN;
  if (run === 'pipe-string') {
    let input = '';
    process.stdin.setEncoding('utf8').on('data', (d) => { input += d; }).on('end', () => {
      process.stdout.write(`fds 0-2: ${[0, 1, 2].map(kind).join(', ')}; stdin said ${JSON.stringify(input)}\n`);
      process.stderr.write('on stderr\n', () => cluster.worker.disconnect());
    });
  } else if (run === 'extra-pipes') {
    const kinds = { fd0: kind(0), fd4: kind(4), fd6: kind(6) };
    const four = new net.Socket({ fd: 4, readable: true, writable: true });
    let got = '';
    four.setEncoding('utf8').on('data', (d) => { got += d; }).on('end', () => {
      four.end(`fd 4 got ${JSON.stringify(got)}\n`);
      const six = new net.Socket({ fd: 6, readable: true, writable: true });
      six.end('hello from fd 6\n', () => {
        process.send(kinds, () => {
          console.log('on stdout');
          cluster.worker.disconnect();
        });
      });
    });
  } else if (run === 'primary-fds') {
    fs.writeSync(5, 'worker: on fd 5 (the primary\'s stdout)\n');
    fs.writeSync(6, 'worker: on fd 6 (the primary\'s stdout)\n');
    const tcp = new net.Socket({ fd: 4, readable: true, writable: true });
    tcp.setEncoding('utf8').once('data', (d) => {
      tcp.end(`worker read ${JSON.stringify(d)} on fd 4\n`, () => cluster.worker.disconnect());
    });
    process.send('ready');
  } else {
    console.log('nobody sees this');
    cluster.worker.disconnect();
  }
}
