// The daemon's process helper (src/daemon/spawner.ts): while registered, every plugin process that
// execPlugin starts in this process is started by the helper (its parent is the helper, not us),
// with execPlugin's semantics unchanged: stdin, stdout, exit codes and the plugin's error JSON,
// timeouts and aborts that kill the process group, a binary that is missing. A helper that dies is
// replaced on the next call; a closed one leaves calls to start their processes themselves.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createProcessHelper, type ProcessHelper, registerProcessHelper } from '../../src/daemon/spawner.js';
import { execPlugin, PluginExecError } from '../../src/delegate/exec.js';

let work = '';
let helper: ProcessHelper;
let unregister = () => {};
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `ckhelper-${process.pid}-`));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));
afterEach(() => {
  unregister();
  helper?.close();
});
const start = () => {
  helper = createProcessHelper();
  unregister = registerProcessHelper(helper);
};

function script(name: string, body: string): string {
  const file = join(work, name);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}
const env = { PATH: '/usr/bin:/bin', CNI_COMMAND: 'ADD' };
const call = (path: string, stdin = '{"cniVersion":"1.0.0","name":"n","type":"t"}') => ({
  path,
  command: 'ADD' as const,
  stdin,
  env,
});

describe('the daemon’s process helper', () => {
  it('starts the plugin (its parent is the helper) and returns its stdout, stdin delivered', async () => {
    start();
    const echo = script('echo-ppid', 'in=$(cat); printf \'{"ppid": %s, "in": %s}\' "$PPID" "$in"');
    const out = await execPlugin(call(echo), { stderr: null });
    const got = JSON.parse(out.stdout) as { ppid: number; in: unknown };
    expect(helper.pid()).toBeDefined();
    expect(got.ppid).toBe(helper.pid());
    expect(got.ppid).not.toBe(process.pid);
    expect(got.in).toEqual({ cniVersion: '1.0.0', name: 'n', type: 't' });
    expect(helper.started()).toBe(1);
    // Several at once, each its own answer.
    const many = await Promise.all(
      Array.from({ length: 8 }, (_, i) => execPlugin(call(echo, String(i)), { stderr: null })),
    );
    expect(many.map((o) => (JSON.parse(o.stdout) as { in: number }).in)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });

  it('keeps execPlugin’s failures: the plugin’s error JSON and code, a missing binary, a timeout, an abort', async () => {
    start();
    const failing = script(
      'fail',
      'cat >/dev/null; echo \'{"cniVersion":"1.0.0","code":7,"msg":"bad field"}\'; echo oops >&2; exit 1',
    );
    const e1 = await execPlugin(call(failing), { stderr: null }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(PluginExecError);
    expect((e1 as PluginExecError).code).toBe(7);
    expect((e1 as PluginExecError).message).toContain('bad field');
    const e2 = await execPlugin(call(join(work, 'absent')), { stderr: null }).catch((e: unknown) => e);
    expect((e2 as PluginExecError).message).toMatch(/could not start the plugin: ENOENT/);
    const slow = script('slow', 'cat >/dev/null; sleep 30');
    const t0 = Date.now();
    const e3 = await execPlugin(call(slow), { stderr: null, timeoutMs: 300, killGraceMs: 200 }).catch(
      (e: unknown) => e,
    );
    expect((e3 as PluginExecError).code).toBe(11);
    expect((e3 as PluginExecError).message).toMatch(/did not finish within 300 ms/);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 200);
    const e4 = await execPlugin(call(slow), { stderr: null, signal: ac.signal, killGraceMs: 200 }).catch(
      (e: unknown) => e,
    );
    expect((e4 as PluginExecError).message).toMatch(/aborted/);
    // Killed, not waited for: each would otherwise take the script's 30 s.
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(helper.started()).toBe(4);
  });

  it('a helper that dies is replaced on the next call; a closed one leaves calls to start processes themselves', async () => {
    start();
    const echo = script('ppid', 'cat >/dev/null; printf \'{"ppid": %s}\' "$PPID"');
    const first = JSON.parse((await execPlugin(call(echo), { stderr: null })).stdout) as { ppid: number };
    process.kill(first.ppid, 'SIGKILL');
    // Until its exit is seen, a call could still be handed to the dying helper: wait for that
    // (a fixed 200 ms is not always enough on a loaded machine).
    const end = Date.now() + 15_000;
    while (helper.pid() === first.ppid && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    expect(helper.pid(), 'the killed helper is still the current one').not.toBe(first.ppid);
    const second = JSON.parse((await execPlugin(call(echo), { stderr: null })).stdout) as { ppid: number };
    expect(second.ppid).not.toBe(first.ppid);
    expect(second.ppid).toBe(helper.pid());
    helper.close();
    const third = JSON.parse((await execPlugin(call(echo), { stderr: null })).stdout) as { ppid: number };
    expect(third.ppid).toBe(process.pid);
  });
});
