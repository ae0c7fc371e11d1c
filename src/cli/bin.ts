#!/usr/bin/env node
// Entry of the `cni-kit` executable (package.json "bin").
import { cliMain } from './main.js';

cliMain(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`cni-kit: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
