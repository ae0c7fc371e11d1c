// The kernel lane's failure modes, on the host (not in the lane itself):
//  - a machine without qemu or without a kernel image: the lane prints one line naming the missing
//    package, counts its lane-only files as skipped and does not fail (CNI_KIT_QEMU /
//    CNI_KIT_VM_KERNEL point the helper at a binary or image that is not there);
//  - the lane-only files are in no run outside the VM, and naming one by hand says where it runs;
//  - a guest that hangs: the watchdog kills qemu at the limit, the failure shows the console's tail,
//    and the run's temporary files are gone;
//  - a working directory under /tmp (a checkout there) stays visible over the guest's own /tmp.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { findVmTools, runInVm, vmFailure } from '../helpers/vm.js';
import { inVm } from './lane.js';
import { KERNEL_LANE, LANE_ONLY_FILES } from './lane-files.js';

/** Runs the lane script with `env` added; returns its exit status, stdout and JSON report. */
function lane(env: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'kl-'));
  try {
    const json = join(dir, 'report.json');
    const r = spawnSync('npx', ['tsx', 'scripts/kernel-lane.ts', '--json', json], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    const report = JSON.parse(readFileSync(json, 'utf8')) as {
      numPassedTests: number;
      numFailedTests: number;
      numPendingTests: number;
      testResults: unknown[];
      kernelLane: unknown[];
      skips: Array<{ file: string; note?: string }>;
      notRun?: string;
    };
    return { status: r.status, stdout: r.stdout, report };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('kernel lane without its packages', () => {
  for (const [what, env, pkg] of [
    ['qemu', { CNI_KIT_QEMU: '/nonexistent/qemu-system-x86_64' }, 'Debian package qemu-system-x86'],
    ['a kernel image', { CNI_KIT_VM_KERNEL: '/nonexistent/vmlinuz-0.0.0-amd64' }, 'linux-image-amd64'],
  ] as const) {
    it(`without ${what}: one line naming ${pkg}, the lane-only files counted as skipped, exit 0`, (ctx) => {
      if (inVm) ctx.skip('runs on the host, not in the lane');
      const r = lane(env);
      expect(r.status, r.stdout).toBe(0);
      const lines = r.stdout.split('\n').filter((l) => l.trim());
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^kernel lane skipped: missing /);
      expect(lines[0]).toContain(pkg);
      const files = lines[0]?.split('not run in the VM: ')[1]?.split(' ') ?? [];
      expect(files).toEqual(KERNEL_LANE.map((e) => e.file));
      // The other files' lane cases skipped on the host already (and stay skipped there, since no
      // lane run passed them); the lane-only files ran nowhere: one skip each, saying why.
      expect(r.report).toMatchObject({
        numPassedTests: 0,
        numFailedTests: 0,
        numPendingTests: LANE_ONLY_FILES.length,
        testResults: [],
        kernelLane: KERNEL_LANE,
      });
      expect(r.report.notRun).toContain(pkg);
      expect(r.report.skips.map((s) => s.file)).toEqual(LANE_ONLY_FILES);
      for (const s of r.report.skips) expect(s.note).toContain(pkg);
    });
  }
});

describe('kernel lane VM watchdog', () => {
  it('kills a hanging guest at the limit; the failure shows the console tail; nothing is left', async (ctx) => {
    if (inVm) ctx.skip('runs on the host, not in the lane');
    if (process.getuid?.() !== 0) ctx.skip('needs root (kernel images under /boot are root-only)');
    const tools = findVmTools();
    if (typeof tools === 'string') ctx.skip(`the kernel lane cannot run: ${tools}`);
    const tmp = mkdtempSync(join(tmpdir(), 'kvm-'));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      const limit = 60_000;
      // The guest's own limit is far beyond the watchdog's: only the watchdog can end this one.
      const r = await runInVm({
        script: 'echo hanging now; sleep 3600',
        cwd: '/',
        timeoutMs: limit,
        guestTimeoutS: 3600,
      });
      expect(r.timedOut).toBe(true);
      expect(r.status).toBeNull();
      expect(r.ms).toBeLessThan(limit + 15_000);
      const text = vmFailure(r, limit);
      expect(text).toContain('the VM did not finish within 60 s and was killed');
      expect(text).toContain('cni-kit-vm: up; running the command');
      expect(r.output).toContain('hanging now');
      expect(readdirSync(tmp)).toEqual([]);
      const ps = spawnSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).stdout;
      expect(ps.split('\n').filter((l) => l.includes(tmp))).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      rmSync(tmp, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('kernel lane VM working directory', () => {
  it('runs the command in a directory under /tmp, which the guest covers with its own tmpfs', async (ctx) => {
    if (inVm) ctx.skip('runs on the host, not in the lane');
    if (process.getuid?.() !== 0) ctx.skip('needs root (kernel images under /boot are root-only)');
    const tools = findVmTools();
    if (typeof tools === 'string') ctx.skip(`the kernel lane cannot run: ${tools}`);
    const dir = mkdtempSync(join('/tmp', "kvm-cwd it's-"));
    try {
      writeFileSync(join(dir, 'marker'), `seen ${process.pid}\n`);
      const r = await runInVm({ script: 'pwd; cat marker; touch written', cwd: dir, timeoutMs: 120_000 });
      expect(r.status, `${r.output}\n${vmFailure(r, 120_000)}`).toBe(0);
      expect(r.output).toBe(`${dir}\nseen ${process.pid}\n`);
      // The guest writes over the host's files in its own layer, never into them.
      expect(readdirSync(dir)).toEqual(['marker']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});

describe('kernel lane files outside the VM', () => {
  /** `vitest list --filesOnly` with `env` added: the files a run would include. */
  function listed(env: Record<string, string>, ...filters: string[]) {
    const r = spawnSync(
      process.execPath,
      ['node_modules/vitest/vitest.mjs', 'list', '--filesOnly', '--passWithNoTests', ...filters],
      { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 },
    );
    // biome-ignore lint/suspicious/noControlCharactersInRegex: strips ANSI colour codes
    const plain = (t: string) => t.replace(/\u001b\[[0-9;]*m/g, '');
    return {
      status: r.status,
      files: plain(r.stdout)
        .split('\n')
        .filter((l) => l.endsWith('.ts')),
      stderr: plain(r.stderr),
    };
  }

  it('no run outside the VM includes a lane-only file; the VM includes them all', (ctx) => {
    if (inVm) ctx.skip('runs on the host, not in the lane');
    expect(LANE_ONLY_FILES.length).toBeGreaterThan(0);
    const host = listed({ CNI_KIT_IN_VM: '' }, 'test/kernel/');
    expect(host.status, host.stderr).toBe(0);
    for (const f of LANE_ONLY_FILES) expect(host.files).not.toContain(f);
    // This file tests the lane from the host, and the mixed files have cases that run anywhere.
    expect(host.files).toContain('test/kernel/vm.test.ts');
    expect(host.files).toContain('test/kernel/ipvlan-mode.test.ts');
    const guest = listed({ CNI_KIT_IN_VM: '1' }, 'test/kernel/');
    expect(guest.status, guest.stderr).toBe(0);
    for (const f of LANE_ONLY_FILES) expect(guest.files).toContain(f);
  });

  it('naming a lane-only file by hand says it runs only in the lane, and how to run it there', (ctx) => {
    if (inVm) ctx.skip('runs on the host, not in the lane');
    const f = LANE_ONLY_FILES[0] ?? '';
    const r = listed({ CNI_KIT_IN_VM: '' }, f);
    expect(r.files).toEqual([]);
    expect(r.stderr).toContain(`${f} runs only in the kernel lane`);
    expect(r.stderr).toContain(`npx tsx scripts/kernel-lane.ts ${f}`);
  });
});
