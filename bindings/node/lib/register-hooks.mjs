// Loader hooks for corral/register on Node versions without module.registerHooks (Node 20,
// Node 22 before 22.15): module.register() runs them on the loader's thread. 'cluster' and
// 'node:cluster' resolve to corral's entries; everything else goes on unchanged.
let urls;

export function initialize(data) {
  urls = data;
}

export function resolve(specifier, context, nextResolve) {
  if (specifier !== 'cluster' && specifier !== 'node:cluster') return nextResolve(specifier, context);
  const byRequire = Array.isArray(context.conditions) && context.conditions.includes('require');
  return byRequire
    ? { url: urls.cjs, format: 'commonjs', shortCircuit: true }
    : { url: urls.esm, format: 'module', shortCircuit: true };
}
