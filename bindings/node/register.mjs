// `node --import corral/register app.mjs`: the same hook as `--require corral/register`
// (register.js), installed before the entry point and its imports are resolved.
import { createRequire } from 'node:module';

createRequire(import.meta.url)('./register.js');
