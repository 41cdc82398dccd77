// Loads the installed corral (argv[2] = its loader, lib/loader.js, for a made-up platform) and
// prints the error's code, its fields and its message, as JSON.
const [, , loaderPath, platform, arch, libc] = process.argv;
try {
  if (loaderPath === 'corral') require('corral');
  else require(loaderPath).loadNative({ host: { platform, arch, libc } });
  console.log(JSON.stringify({ loaded: true }));
} catch (e) {
  const { code, target, supported, tried, message } = e;
  console.log(JSON.stringify({ code, target, supported, tried, message }));
}
