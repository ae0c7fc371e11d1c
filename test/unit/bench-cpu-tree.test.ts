// The benches' "daemon CPU": the daemon starts its delegates through a process helper (a live
// child), which reaps them, so their CPU is in neither the daemon's own times nor its reaped
// children's; only the whole process tree holds it.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { procCpuTicksMs, procTree, procTreeCpuFineMs, procTreeCpuTicksMs } from '../../bench/lib.js';

const started: ChildProcess[] = [];
afterEach(() => {
  for (const c of started.splice(0)) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

/** A process's name; '' once it has exited (a delegate may end between the listing and the read). */
const comm = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};

describe('procTreeCpuTicksMs', () => {
  it("counts what a live child reaped (a helper's delegates), which the root's own figures miss", async () => {
    // root (sh) -> helper (sh) -> delegate (awk, about 0.2 s of CPU, reaped by the helper), then
    // the helper becomes a sleep and stays alive.
    const root = spawn(
      '/bin/sh',
      ['-c', `/bin/sh -c 'awk "BEGIN{for(i=0;i<4000000;i++)s+=i*i}"; exec sleep 30' & wait`],
      { detached: true, stdio: 'ignore' },
    );
    started.push(root);
    const pid = root.pid!;
    const deadline = Date.now() + 20_000;
    while (!procTree(pid).some((p) => p !== pid && comm(p) === 'sleep')) {
      if (Date.now() > deadline) throw new Error('the helper never finished its delegate');
      await new Promise((r) => setTimeout(r, 20));
    }
    const tree = procTree(pid);
    expect(tree[0]).toBe(pid);
    expect(tree).toHaveLength(2);
    const rootOnly = procCpuTicksMs(pid);
    const whole = procTreeCpuTicksMs(pid);
    expect(rootOnly.own + rootOnly.children).toBeLessThan(30);
    expect(whole.own + whole.children).toBeGreaterThanOrEqual(50);
    expect(whole.children).toBeGreaterThanOrEqual(50);
    // The fine figure counts live threads only; what was reaped is in `children`.
    expect(procTreeCpuFineMs(pid)).toBeLessThan(whole.children);
  }, 30_000);
});
