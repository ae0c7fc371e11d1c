// Vitest global setup, run once in the main process around the whole run:
//  - builds the plugin binaries the tests exec (dist/bin/<type>) unless the caller already did
//    (npm test builds first and sets CNI_KIT_BUILT=1);
//  - gives the run a private temp directory: TMPDIR is set before any worker starts, so every
//    os.tmpdir() of the tests (and of the processes they start with the inherited environment)
//    lands in it. The machine's shared temp directory has other writers, so a name comparison
//    there could not tell the tests' files from theirs; here anything left at the end is a leak;
//  - checks for leaks after the last test file (test/helpers/leak-check.ts): namespaces, root
//    netns links/addresses/routes, iptables/nft rules, mounts, CNI state files, temp entries and
//    processes that differ from the snapshot taken here. A leak fails the run (exit code 1) with
//    the list. CNI_KIT_LEAK_CHECK=0 turns the check off, e.g. when another run shares the machine.
//    Before comparing, the shared NAT chains the Go portmap made during the run and never removes
//    are removed if no container uses them (test/helpers/go-portmap.ts).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeNewPortmapChains } from './go-portmap.js';
import { findLeaks, formatLeaks, type Snapshot, takeSnapshot } from './leak-check.js';

export default function setup(): () => Promise<void> {
  if (process.env.CNI_KIT_BUILT !== '1')
    execFileSync('node', ['scripts/build-bins.mjs'], { stdio: 'inherit' });

  const sharedTmp = process.env.TMPDIR;
  const runTmp = mkdtempSync(join(tmpdir(), 'cni-kit-test-'));
  process.env.TMPDIR = runTmp;
  const check = process.env.CNI_KIT_LEAK_CHECK !== '0';
  const opts = { tmpDir: runTmp, selfPid: process.pid };
  const before: Snapshot | undefined = check ? takeSnapshot(opts) : undefined;

  return async () => {
    try {
      if (!before) return;
      removeNewPortmapChains(before);
      const leaks = await findLeaks(before, opts);
      const report = process.env.CNI_KIT_LEAK_REPORT;
      if (report) writeFileSync(report, JSON.stringify(leaks, null, 2));
      if (leaks.length === 0) {
        console.log('\nleak check: the run left nothing behind');
        return;
      }
      console.error(`\n${formatLeaks(leaks)}\n`);
      process.exitCode = 1;
    } finally {
      rmSync(runTmp, { recursive: true, force: true });
      if (sharedTmp === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = sharedTmp;
    }
  };
}
