'use strict';
// Which addon this process needs and where it comes from, as @napi-rs/cli's generated loader
// does it (by hand: no runtime dependency). Each target has its own file name
// (corral.<target>.node) and its own npm package (corral-<target>, under npm/<target>/), an
// optionalDependency of corral that npm installs only where its `os`, `cpu` and `libc` match.
// Loading nothing at require time: lib/native.js calls loadNative(); the tests call it with a
// made-up platform.

const fs = require('fs');
const path = require('path');
const { codedError } = require('./errors');

// The targets corral publishes a package for: npm/<target>/package.json each, and the main
// package's optionalDependencies (test/npm.test.js checks the three agree).
const TARGETS = ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'linux-arm64-musl'];

const PACKAGE_DIR = path.join(__dirname, '..');

// musl or glibc, with napi-rs's probes, cheapest first: /usr/bin/ldd is a script naming its
// libc (a file read), then the process report, whose header has glibcVersionRuntime exactly
// when Node runs on glibc (and whose shared objects name musl's loader otherwise).
function isMusl() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl');
  } catch {
    // no ldd (distroless, some containers): ask the report
  }
  const report = process.report;
  if (!report || typeof report.getReport !== 'function') return false;
  // A report lists the process's sockets unless told not to; that costs and is not needed.
  // Restored: it is the user's setting.
  const exclude = report.excludeNetwork;
  let header;
  let sharedObjects;
  try {
    report.excludeNetwork = true;
    ({ header, sharedObjects } = report.getReport());
  } finally {
    report.excludeNetwork = exclude;
  }
  if (header && header.glibcVersionRuntime) return false;
  return Array.isArray(sharedObjects) && sharedObjects.some((f) => f.includes('libc.musl-') || f.includes('ld-musl-'));
}

// { platform, arch, libc } of this process; libc is 'glibc' or 'musl' on Linux, else null.
function hostPlatform() {
  const { platform, arch } = process;
  return { platform, arch, libc: platform === 'linux' ? (isMusl() ? 'musl' : 'glibc') : null };
}

// napi-rs's platformArchABI: linux-x64-gnu, linux-arm64-musl, darwin-arm64, ...
function targetOf({ platform, arch, libc }) {
  if (platform !== 'linux') return `${platform}-${arch}`;
  return `${platform}-${arch}-${libc === 'musl' ? 'musl' : 'gnu'}`;
}

const describe = ({ platform, arch, libc }) => [platform, arch, libc].filter(Boolean).join(' ');
const addonFile = (target) => `corral.${target}.node`;
const packageOf = (target) => `corral-${target}`;

// The addon's exports, from the first of: CORRAL_NATIVE_PATH, the file built for this target
// next to index.js (`npm run build` in a clone), the target's package. Otherwise one
// ERR_CORRAL_NATIVE_NOT_FOUND that names the platform, the supported targets and every place
// tried (with why each failed). `host`, `env`, `resolve` and `dlopen` are parameters so that the
// tests can ask about a platform this machine is not.
function loadNative({
  host = hostPlatform(),
  env = process.env,
  packageDir = PACKAGE_DIR,
  resolve = require.resolve,
  dlopen = (mod, file) => process.dlopen(mod, file),
} = {}) {
  const target = targetOf(host);
  const supported = TARGETS.includes(target);
  const tried = [];
  const open = (file, label) => {
    if (!fs.existsSync(file)) {
      tried.push(`${label} (not found)`);
      return null;
    }
    const mod = { exports: {} };
    try {
      dlopen(mod, file);
      return mod.exports;
    } catch (e) {
      tried.push(`${label} (${e.message})`);
      return null;
    }
  };
  const files = [];
  if (env.CORRAL_NATIVE_PATH) files.push([env.CORRAL_NATIVE_PATH, `CORRAL_NATIVE_PATH=${env.CORRAL_NATIVE_PATH}`]);
  const local = path.join(packageDir, addonFile(target));
  files.push([local, local]);
  for (const [file, label] of files) {
    const exports = open(file, label);
    if (exports) return exports;
  }
  const pkg = packageOf(target);
  if (supported) {
    let file = null;
    try {
      file = resolve(pkg, { paths: [packageDir] });
    } catch {
      tried.push(`package ${pkg} (not installed)`);
    }
    if (file) {
      const exports = open(file, `package ${pkg}: ${file}`);
      if (exports) return exports;
    }
  } else {
    tried.push(`package ${pkg} (none published: not a supported target)`);
  }
  const head = supported
    ? `corral: cannot load the native addon for ${describe(host)} (${target}). It comes from the ` +
      `package ${pkg}, an optionalDependency of corral that npm installs on ${target} only: ` +
      'reinstall on this machine without --omit=optional / --no-optional (node_modules copied ' +
      'from another platform lacks it), or in a clone of corral run "npm run build".'
    : `corral: ${describe(host)} (${target}) is not a supported platform, there is no prebuilt ` +
      'addon for it. Build it from source: "npm run build" in a clone of corral (needs Rust), ' +
      'then set CORRAL_NATIVE_PATH to the built file.';
  throw codedError(
    Error,
    'ERR_CORRAL_NATIVE_NOT_FOUND',
    `${head}\nSupported: ${TARGETS.join(', ')}.\nTried:\n  ${tried.join('\n  ')}`,
    { platform: host.platform, arch: host.arch, libc: host.libc, target, supported: TARGETS.slice(), tried },
  );
}

module.exports = { TARGETS, hostPlatform, isMusl, targetOf, addonFile, packageOf, loadNative };
