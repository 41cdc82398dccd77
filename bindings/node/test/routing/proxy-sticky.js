'use strict';
// sticky behind the PROXY protocol: 4 workers; every connection starts with a PROXY header (v1
// or v2) naming a client; each client's connections reach one worker, and the worker's socket
// reports the client (remoteAddress, remotePort, remoteFamily), with the header consumed.
// Prints "ok <workers used>" and exits 0.
const cluster = require(process.env.CORRAL_MODULE);
const net = require('node:net');

const WORKERS = 4;

if (cluster.isPrimary) {
  setTimeout(() => {
    console.log('timed out');
    process.exit(1);
  }, 20_000).unref();
  cluster.schedulingPolicy = 'sticky';
  cluster.setupPrimary({ proxyProtocol: true });
  for (let i = 0; i < WORKERS; i++) cluster.fork();
  let listening = 0;
  cluster.on('listening', (_w, address) => {
    if (++listening === WORKERS) run(address.port).catch((e) => {
      console.log(`failed: ${e.stack}`);
      process.exit(1);
    });
  });
} else {
  net.createServer((s) => {
    s.once('data', (d) => {
      s.end(`${cluster.worker.id} ${s.remoteAddress} ${s.remotePort} ${s.remoteFamily} ${d.toString().trim()}\n`);
    });
  }).listen(0, '127.0.0.1');
}

function v1(ip, port) {
  return Buffer.from(`PROXY TCP4 ${ip} 127.0.0.1 ${port} 80\r\n`);
}

function v2v6(ip, port) {
  const h = Buffer.alloc(16 + 36);
  Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1').copy(h, 0);
  h[12] = 0x21;
  h[13] = 0x21;
  h.writeUInt16BE(36, 14);
  const groups = ip.split(':').map((g) => parseInt(g || '0', 16));
  // Only the "2001:db8::N" form is used here.
  const full = [groups[0], groups[1], 0, 0, 0, 0, 0, groups[groups.length - 1]];
  full.forEach((g, i) => h.writeUInt16BE(g, 16 + 2 * i));
  h.writeUInt16BE(1, 16 + 30); // ::1
  h.writeUInt16BE(port, 16 + 32);
  h.writeUInt16BE(80, 16 + 34);
  return h;
}

function ask(port, header) {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1', () => c.write(Buffer.concat([header, Buffer.from('hello\n')])));
    let out = '';
    c.on('data', (d) => (out += d));
    c.on('end', () => resolve(out.trim()));
    c.on('error', reject);
  });
}

async function run(port) {
  const byClient = new Map();
  for (let round = 0; round < 5; round++) {
    for (let c = 1; c <= 8; c++) {
      const v6 = c % 4 === 0;
      const ip = v6 ? `2001:db8::${c}` : `203.0.113.${c}`;
      const cport = 1000 + round * 10 + c;
      const answer = await ask(port, v6 ? v2v6(ip, cport) : v1(ip, cport));
      const [worker, addr, rport, family, rest] = answer.split(' ');
      const want = `${ip} ${cport} ${v6 ? 'IPv6' : 'IPv4'} hello`;
      if (`${addr} ${rport} ${family} ${rest}` !== want) throw new Error(`got "${answer}", want "<id> ${want}"`);
      if (!byClient.has(ip)) byClient.set(ip, new Set());
      byClient.get(ip).add(worker);
    }
  }
  for (const [ip, ws] of byClient) {
    if (ws.size !== 1) throw new Error(`${ip} reached workers ${[...ws]}`);
  }
  const used = new Set([...byClient.values()].flatMap((s) => [...s]));
  console.log(`ok ${used.size}`);
  cluster.disconnect();
}
