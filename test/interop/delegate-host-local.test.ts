// The delegation helpers against the Go host-local IPAM plugin, as a meta plugin would use them.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CniError, ErrorCode } from 'cni-kit';
import { delegateAdd, delegateCheck, delegateDel, delegateStatus, PluginExecError } from 'cni-kit/delegate';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { makePluginDir, type PluginDir, recorder } from '../fixtures/delegate/plugins.js';

const GO = '/usr/lib/cni';
const octet = 100 + (process.pid % 100);
let work: string;
let pd: PluginDir;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `ckdi-${process.pid}-`));
  pd = makePluginDir('ckdi');
  recorder(pd, 'rec-ipam');
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  pd.cleanup();
});

function need(ctx: TestContext) {
  if (!existsSync(join(GO, 'host-local'))) ctx.skip(`Go host-local not installed in ${GO}`);
}

// The environment a meta plugin (say, bridge) was called with; delegates inherit it.
const pluginEnv = (cid: string, extra: Record<string, string> = {}) => ({
  PATH: process.env.PATH,
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: cid,
  CNI_NETNS: '/var/run/netns/ckdi-unused',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: '',
  CNI_PATH: `/nonexistent-ckdi:${GO}:${pd.dir}`,
  ...extra,
});

describe('delegate helpers with Go host-local', () => {
  it('ADD, CHECK and DEL the full config, converting results both ways', async (ctx) => {
    need(ctx);
    const dataDir = join(work, 'hl');
    const stdin = JSON.stringify({
      cniVersion: '0.4.0',
      name: `ckdi${process.pid}`,
      type: 'bridge',
      bridge: 'unused',
      ipam: { type: 'host-local', subnet: `10.${octet}.250.0/24`, dataDir },
    });
    const env = pluginEnv('ckdi-c1');
    const result = await delegateAdd('host-local', stdin, { env, stderr: null });
    // current result type: 1.1.0, no per-IP version field
    expect(result.cniVersion).toBe('1.1.0');
    expect(result.ips).toEqual([{ address: `10.${octet}.250.2/24`, gateway: `10.${octet}.250.1` }]);
    const store = join(dataDir, `ckdi${process.pid}`);
    expect(readFileSync(join(store, `10.${octet}.250.2`), 'utf8')).toContain('ckdi-c1');

    // an object config carries prevResult as the current type; it must reach host-local as 0.4.0
    const conf = { ...(JSON.parse(stdin) as Record<string, unknown>), prevResult: result };
    await delegateCheck('host-local', conf, { env: { ...env, CNI_COMMAND: 'CHECK' }, stderr: null });

    await delegateDel('host-local', conf, { env: { ...env, CNI_COMMAND: 'DEL' }, stderr: null });
    expect(readdirSync(store).filter((f) => f.startsWith('10.'))).toEqual([]);
    // DEL is idempotent through the helper as well
    await delegateDel('host-local', stdin, { env, stderr: null });
  });

  it('keeps the delegate error code (STATUS is unknown to the 1.1.1 plugins)', async (ctx) => {
    need(ctx);
    const stdin = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'ckdis',
      type: 'x',
      ipam: { type: 'host-local', subnet: '10.0.0.0/24' },
    });
    const err = await delegateStatus('host-local', stdin, { env: pluginEnv('c'), stderr: null }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PluginExecError);
    expect((err as CniError).code).toBe(ErrorCode.InvalidEnvironmentVariables);
    expect((err as CniError).message).toContain('plugin type="host-local" name="ckdis" failed (status)');
  });

  it('names the delegate type and CNI_PATH when the delegate is missing', async () => {
    const err = (await delegateAdd('no-such-ipam', '{"cniVersion":"1.0.0","name":"n"}', {
      env: pluginEnv('c'),
    }).catch((e: unknown) => e)) as CniError;
    expect(err.message).toContain('"no-such-ipam"');
    expect(err.message).toContain('/nonexistent-ckdi');
    expect(err.message).toContain(GO);
  });

  it('runs DEL on the delegate after a failed ADD, with only CNI_COMMAND changed', async () => {
    const log = join(work, 'rec.log');
    const env = pluginEnv('ckdi-c2', { RECORD_LOG: log, FAIL_REC_IPAM_ADD: '11', CNI_ARGS: 'A=1' });
    const err = (await delegateAdd('rec-ipam', '{"cniVersion":"1.0.0","name":"n","type":"t"}', {
      env,
      stderr: null,
    }).catch((e: unknown) => e)) as CniError;
    expect(err.code).toBe(ErrorCode.TryAgainLater);
    const calls = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { cmd: string; cid: string; args: string; stdin: unknown });
    expect(calls.map((c) => [c.cmd, c.cid, c.args])).toEqual([
      ['ADD', 'ckdi-c2', 'A=1'],
      ['DEL', 'ckdi-c2', 'A=1'],
    ]);
    expect(calls[1]?.stdin).toEqual({ cniVersion: '1.0.0', name: 'n', type: 't' });
  });
});
