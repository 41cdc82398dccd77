'use strict';
// setupPrimary's routing options and the policy names: each bad value throws a coded error
// naming the option, before any worker starts. Prints one line per check and "done".
const cluster = require(process.env.CORRAL_MODULE);

function check(name, fn) {
  try {
    fn();
    console.log(`${name}: no error`);
  } catch (e) {
    console.log(`${name}: ${e.code} ${e.message}`);
  }
}

console.log(`constants ${cluster.SCHED_STICKY} ${cluster.SCHED_LEAST}`);
check('two keys', () => cluster.setupPrimary({ sticky: { cookie: 'io', query: 'sid' } }));
check('key name', () => cluster.setupPrimary({ sticky: { cookie: 'a b' } }));
check('prefix', () => cluster.setupPrimary({ sticky: { prefix: { v4: 33 } } }));
check('unknown key', () => cluster.setupPrimary({ sticky: { cokie: 'io' } }));
check('proxyProtocol', () => cluster.setupPrimary({ proxyProtocol: 'yes' }));
cluster.schedulingPolicy = 'bogus';
check('policy', () => cluster.setupPrimary({}));
cluster.schedulingPolicy = 'least-p2c';
check('least-p2c', () => cluster.setupPrimary({ sticky: { query: 'sid', prefix: { v4: 24, v6: 64 } }, proxyProtocol: false }));
console.log('done');
