// A child process for the IPAM crash tests (bundled to CommonJS by the test with esbuild): runs one
// ADD or DEL of the whereabouts file store or of host-local, and SIGKILLs itself right before its
// Nth call that touches the filesystem (open, write, fsync, link, rename, unlink, mkdir, ...), so a
// test can stop it at every step the implementation takes without knowing what the steps are.
// Prints "done <calls>" when it finishes without being killed.
import { HostLocalAllocator } from '../../src/ipam/host-local/allocator.js';
import type { IpamAllocator } from '../../src/ipam/types.js';
import { createWhereaboutsAllocator } from '../../src/ipam/whereabouts/index.js';

const killAt = Number(process.env.CRASH_AT ?? '0');
let calls = 0;
const TOUCH = [
  'openSync',
  'writeSync',
  'fsyncSync',
  'closeSync',
  'linkSync',
  'renameSync',
  'unlinkSync',
  'mkdirSync',
  'rmSync',
  'writeFileSync',
  'appendFileSync',
  'ftruncateSync',
] as const;
// The module object itself (what the bundle's `require('node:fs')` returns), not a namespace copy.
const target = process.getBuiltinModule('node:fs') as unknown as Record<string, (...a: unknown[]) => unknown>;
for (const name of TOUCH) {
  const real = target[name]!;
  target[name] = (...a: unknown[]) => {
    calls++;
    if (calls === killAt) process.kill(process.pid, 'SIGKILL');
    return real(...a);
  };
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.CRASH_CONFIG ?? '{}');
  const alloc: IpamAllocator =
    config.ipam.type === 'host-local'
      ? new HostLocalAllocator(config)
      : createWhereaboutsAllocator(config, { closeAfterEachCall: true, flatFilePaths: [] });
  const args = JSON.parse(process.env.CRASH_ARGS ?? '[]') as Array<[string, string]>;
  const req = { containerId: process.env.CRASH_ID ?? 'ctr', ifname: 'net1', args };
  if (process.env.CRASH_CMD === 'DEL') await alloc.release(req);
  else await alloc.allocate(req);
  process.stdout.write(`done ${calls}\n`);
}

main().catch((err) => {
  process.stdout.write(`error ${String(err)}\n`);
  process.exit(1);
});
