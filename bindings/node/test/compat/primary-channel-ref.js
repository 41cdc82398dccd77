'use strict';
// Scenario: worker.process.channel in the primary, Node's Control: an EventEmitter with ref(),
// unref() and a numeric fd, null from the worker's disconnect on. A worker keeps the primary
// alive through its process (worker.process.ref()/unref()) and its channel
// (worker.process.channel.ref()/unref()): with both unref()'d the primary exits while the
// worker still runs (which then sees its channel end and exits); either one ref()'d keeps the
// primary running.
const scenario = require('../compat-support/scenario');
if (scenario.skippedUnderNodeTest(__filename)) return;
const { armTimeout } = scenario;
const cluster = require(process.env.CORRAL_COMPAT_MODULE || 'node:cluster');
const EventEmitter = require('node:events');

// An unref()'d timer runs only while something else keeps the primary alive.
const STILL_RUNNING_MS = 200;

if (cluster.isPrimary) {
  armTimeout(cluster, 15000);
  const first = cluster.fork();
  const c = first.process.channel;
  console.log(`channel: EventEmitter ${c instanceof EventEmitter}, ref ${typeof c.ref}, unref ${typeof c.unref}, ` +
    `fd ${typeof c.fd}${Number.isInteger(c.fd) && c.fd >= 0 ? ' >= 0' : ''}, ref() returns ${c.ref()}`);
  first.on('online', () => first.disconnect());
  first.on('disconnect', () => console.log(`after 'disconnect': channel ${first.process.channel}`));
  first.on('exit', (code) => {
    console.log(`worker ${first.id} exit ${code}`);
    second();
  });

  function second() {
    const w = cluster.fork({ KEEP_RUNNING: '1' });
    process.on('exit', (code) => {
      console.log(`primary exit ${code}, worker ${w.id}: dead ${w.isDead()}, connected ${w.isConnected()}`);
    });
    const stillRunning = (what, then) => {
      const timer = setTimeout(() => {
        console.log(`${what}: the primary still runs`);
        then();
      }, STILL_RUNNING_MS);
      timer.unref();
    };
    w.on('online', () => {
      w.process.channel.unref();
      stillRunning('channel unref()ed, process ref()ed', () => {
        w.process.unref();
        w.process.channel.ref();
        stillRunning('process unref()ed, channel ref()ed', () => {
          console.log('channel unref()ed too: nothing keeps the primary');
          w.process.channel.unref();
        });
      });
    });
  }
} else if (process.env.KEEP_RUNNING) {
  // Runs until its channel ends (node:cluster's worker exits on an unexpected disconnect).
  setInterval(() => {}, 1000);
}
