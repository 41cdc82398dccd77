'use strict';
// corral/register: the whole program on corral without editing it.
//
//   node --require corral/register app.js        (or NODE_OPTIONS=--require=corral/register)
//   node --import corral/register app.mjs        (register.mjs, which loads this file)
//
// Every require('cluster') / require('node:cluster'), import ... from 'node:cluster' and
// process.getBuiltinModule('cluster') in the process then returns corral, so libraries that use
// the cluster module themselves (prom-client's AggregatorRegistry, @socket.io/cluster-adapter,
// @socket.io/sticky, ...) talk to corral's workers. Workers get the hook too: fork() passes the
// primary's execArgv (so --require/--import) and environment (so NODE_OPTIONS), as Node does.
//
// How, by Node version:
// - module.registerHooks (Node >= 22.15 / 23.5): one synchronous resolve hook on this thread
//   for require() and import alike;
// - otherwise (Node 20, older 22): Module._load is wrapped for require(), and module.register()
//   installs lib/register-hooks.mjs (resolve only) for import.
//
// Node's own modules keep the built-in cluster module: net and dgram ask it "am I a worker?",
// and in a corral worker it answers "primary". That is what corral relies on: net's primary
// branch calls net.Server.prototype._listen2, which corral's worker side routes to corral's
// primary (lib/child.js); the built-in's worker branch would speak Node's own NODE_CLUSTER
// protocol over a channel a corral worker does not have. Those two are the only internal
// readers of the built-in (checked in the lib/ sources of Node 20, 22 and 24).

const Module = require('module');
const path = require('path');
const { pathToFileURL } = require('url');

const CJS_ENTRY = path.join(__dirname, 'index.js');
const ESM_ENTRY = path.join(__dirname, 'index.mjs');
const IDS = ['cluster', 'node:cluster'];

// Loaded twice (--require and --import, or two copies of the package): the first one wins.
const kInstalled = Symbol.for('corral.register');

function install() {
  if (globalThis[kInstalled]) return;
  Object.defineProperty(globalThis, kInstalled, { value: CJS_ENTRY });

  if (typeof Module.registerHooks === 'function') {
    const cjsUrl = pathToFileURL(CJS_ENTRY).href;
    const esmUrl = pathToFileURL(ESM_ENTRY).href;
    Module.registerHooks({
      resolve(specifier, context, nextResolve) {
        if (!IDS.includes(specifier)) return nextResolve(specifier, context);
        const byRequire = Array.isArray(context.conditions) && context.conditions.includes('require');
        return byRequire
          ? { url: cjsUrl, format: 'commonjs', shortCircuit: true }
          : { url: esmUrl, format: 'module', shortCircuit: true };
      },
    });
  } else {
    const load = Module._load;
    Module._load = function _load(request, parent, isMain) {
      if (IDS.includes(request)) return load.call(this, CJS_ENTRY, parent, isMain);
      return load.apply(this, arguments);
    };
    if (typeof Module.register === 'function') {
      Module.register(pathToFileURL(path.join(__dirname, 'lib', 'register-hooks.mjs')), {
        data: { cjs: pathToFileURL(CJS_ENTRY).href, esm: pathToFileURL(ESM_ENTRY).href },
      });
    }
  }

  // Node 20.16+/22.3+: the built-in without going through the module loader.
  const getBuiltinModule = process.getBuiltinModule;
  if (typeof getBuiltinModule === 'function') {
    process.getBuiltinModule = function (id) {
      if (IDS.includes(id)) return require(CJS_ENTRY);
      return getBuiltinModule.apply(this, arguments);
    };
  }
}

install();
