import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { CniError, ErrorCode } from 'cni-kit';
import {
  decodeVersionInfo,
  type ExecCall,
  execPlugin,
  findInPath,
  getVersionInfo,
  PluginExecError,
} from 'cni-kit/delegate';
import { buildCniEnv, buildDelegateEnv } from 'cni-kit/spec';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execPluginForJson } from '../../src/delegate/exec.js';
import { makePluginDir, type PluginDir } from '../fixtures/delegate/plugins.js';

let pd: PluginDir;
let other: PluginDir;

beforeAll(() => {
  pd = makePluginDir('ckde');
  other = makePluginDir('ckde2');
});
afterAll(() => {
  pd.cleanup();
  other.cleanup();
});

const sink = () => {
  const chunks: string[] = [];
  const w = new Writable({
    write(c, _e, cb) {
      chunks.push(String(c));
      cb();
    },
  });
  return { w, text: () => chunks.join('') };
};

function call(path: string, over: Partial<ExecCall> = {}): ExecCall {
  return {
    path,
    command: 'ADD',
    stdin: '{"cniVersion":"1.0.0","name":"n","type":"t"}',
    env: buildCniEnv(
      { PATH: process.env.PATH },
      { command: 'ADD', containerId: 'c1', netns: '/x', ifname: 'eth0' },
    ),
    ...over,
  };
}

async function failure(p: Promise<unknown>): Promise<PluginExecError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(PluginExecError);
    expect(e).toBeInstanceOf(CniError);
    return e as PluginExecError;
  }
  throw new Error('expected the call to fail');
}

describe('findInPath', () => {
  it('returns the first executable regular file in path order', async () => {
    const a = other.script('dup', 'exit 0');
    pd.script('dup', 'exit 0');
    expect(await findInPath('dup', [other.dir, pd.dir])).toBe(a);
    expect(await findInPath('dup', [pd.dir, other.dir])).toBe(join(pd.dir, 'dup'));
  });

  it('skips directories and non-executable files, and names them', async () => {
    mkdirSync(join(other.dir, 'isdir'));
    pd.script('isdir', 'exit 0');
    expect(await findInPath('isdir', [other.dir, pd.dir])).toBe(join(pd.dir, 'isdir'));
    other.script('noexec', 'exit 0', 0o644);
    const e = await findInPath('noexec', [other.dir]).catch((x: unknown) => x as CniError);
    expect(e).toBeInstanceOf(CniError);
    expect((e as CniError).message).toContain('not executable');
    expect((e as CniError).message).toContain(join(other.dir, 'noexec'));
  });

  it('names the type and every directory searched when missing', async () => {
    const e = (await findInPath('nosuch', [pd.dir, '/nonexistent-ckde']).catch(
      (x: unknown) => x,
    )) as CniError;
    expect(e.code).toBe(ErrorCode.InvalidNetworkConfig);
    expect(e.message).toContain('"nosuch"');
    expect(e.message).toContain(pd.dir);
    expect(e.message).toContain('/nonexistent-ckde');
  });

  it('refuses types with path separators and an empty path list', async () => {
    for (const bad of ['../bin/sh', '/bin/sh', 'a\\b', '']) {
      const e = (await findInPath(bad, [pd.dir]).catch((x: unknown) => x)) as CniError;
      expect(e).toBeInstanceOf(CniError);
      expect(e.code).toBe(ErrorCode.InvalidNetworkConfig);
    }
    const e = (await findInPath('x', []).catch((x: unknown) => x)) as CniError;
    expect(e.message).toContain('CNI_PATH');
  });
});

describe('execPlugin', () => {
  it('passes env and stdin, captures stdout, forwards stderr', async () => {
    const p = pd.script(
      'echo-env',
      'echo "warn: $CNI_COMMAND" >&2; cat; printf " %s %s %s" "$CNI_IFNAME" "$KEEP" "$CNI_ARGS"',
    );
    const s = sink();
    const env = buildCniEnv(
      { PATH: process.env.PATH, KEEP: 'kept', CNI_IFNAME: 'inherited' },
      { command: 'DEL', containerId: 'c', ifname: 'net1', args: [['A', 'b=c']] },
    );
    const out = await execPlugin(call(p, { command: 'DEL', env, stdin: 'IN' }), { stderr: s.w });
    expect(out.stdout).toBe('IN net1 kept A=b=c');
    expect(s.text()).toBe('warn: DEL\n');
    expect(out.stderr).toBe('warn: DEL\n');
  });

  it('keeps the code, message and details of CNI error JSON', async () => {
    const p = pd.script('err-json', `echo '{"code":11,"msg":"busy now","details":"try later"}'; exit 1`);
    const e = await failure(execPlugin(call(p, { name: 'mynet' }), { stderr: null }));
    expect(e.code).toBe(11);
    expect(e.details).toBe('try later');
    expect(e.reason).toBe('busy now');
    expect(e.message).toContain('plugin type="err-json" name="mynet" failed (add): busy now');
    expect(e.message).toContain(p);
    expect(e.message).toContain('exit status 1');
    expect(e.exit?.exitCode).toBe(1);
  });

  it('quotes non-JSON stdout, stderr and the exit status', async () => {
    const p = pd.script(
      'static-ipam',
      `echo 'ipam.ExecDel: static-ipam CNI_COMMAND is not DEL'; echo 'some log' >&2; exit 3`,
    );
    const e = await failure(execPlugin(call(p, { command: 'DEL' }), { stderr: null }));
    expect(e.code).toBe(ErrorCode.Internal);
    expect(e.message).toContain('"ipam.ExecDel: static-ipam CNI_COMMAND is not DEL"');
    expect(e.message).toContain('"some log"');
    expect(e.message).toContain('exit status 3');
    expect(e.message).toContain('(del)');
  });

  it('reports empty stdout with the stderr text, and a silent failure as such', async () => {
    const p = pd.script('empty-stderr', `echo 'cannot open /run/thing' >&2; exit 2`);
    const e = await failure(execPlugin(call(p), { stderr: null }));
    expect(e.message).toContain('printed no error JSON on stdout; stderr: "cannot open /run/thing"');
    expect(e.message).toContain('exit status 2');
    const q = pd.script('silent', 'exit 4');
    const e2 = await failure(execPlugin(call(q), { stderr: null }));
    expect(e2.message).toContain('printed nothing on stdout or stderr');
  });

  it('kills a hanging plugin after the timeout: SIGTERM, then SIGKILL when ignored', async () => {
    const p = pd.script('hang', 'echo started >&2; exec sleep 30');
    const t0 = Date.now();
    const e = await failure(execPlugin(call(p), { timeoutMs: 1000, stderr: null }));
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(e.code).toBe(ErrorCode.TryAgainLater);
    expect(e.exit?.timedOut).toBe(true);
    expect(e.exit?.signal).toBe('SIGTERM');
    expect(e.message).toContain('did not finish within 1000 ms');
    expect(e.message).toContain('"started"');

    const q = pd.script('stubborn', `trap '' TERM; while :; do sleep 0.05; done`);
    const e2 = await failure(execPlugin(call(q), { timeoutMs: 1000, killGraceMs: 200, stderr: null }));
    expect(e2.exit?.signal).toBe('SIGKILL');
  });

  it('honours an AbortSignal', async () => {
    const p = pd.script('hang2', 'exec sleep 30');
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const e = await failure(execPlugin(call(p), { signal: ac.signal, stderr: null }));
    expect(e.exit?.aborted).toBe(true);
    const pre = await failure(execPlugin(call(p), { signal: AbortSignal.abort(), stderr: null }));
    expect(pre.message).toContain('aborted before');
  });

  it('retries ETXTBSY and fails with code 11 when the binary stays busy', async () => {
    const p = join(pd.dir, 'busy');
    writeFileSync(p, '#!/bin/sh\necho ok\n', { mode: 0o755 });
    const fd = openSync(p, 'r+');
    try {
      const e = await failure(execPlugin(call(p), { busyRetries: 2, busyRetryDelayMs: 20, stderr: null }));
      expect(e.code).toBe(ErrorCode.TryAgainLater);
      expect(e.message).toContain('text file busy');
      expect(e.message).toContain('3 attempts');
    } finally {
      closeSync(fd);
    }
    // released while retrying: the call succeeds
    const fd2 = openSync(p, 'r+');
    setTimeout(() => closeSync(fd2), 60);
    const out = await execPlugin(call(p), { busyRetries: 50, busyRetryDelayMs: 20, stderr: null });
    expect(out.stdout).toBe('ok\n');
  });

  it('execPluginForJson fills a missing cniVersion and rejects non-JSON success output', async () => {
    const p = pd.script('noversion', `echo '{"ips":[{"address":"10.0.0.2/24"}]}'`);
    const r = await execPluginForJson(call(p), '0.4.0', { stderr: null });
    expect(r.cniVersion).toBe('0.4.0');
    const q = pd.script('garbage', `echo 'hello'`);
    const e = await failure(execPluginForJson(call(q), '1.0.0', { stderr: null }));
    expect(e.code).toBe(ErrorCode.DecodingFailure);
    expect(e.message).toContain('"hello"');
    const z = pd.script('err-exit0', `echo '{"code":7,"msg":"bad conf"}'`);
    expect((await failure(execPluginForJson(call(z), '1.0.0', { stderr: null }))).code).toBe(7);
  });

  it('reports a plugin that cannot be started', async () => {
    const e = await failure(execPlugin(call(join(pd.dir, 'does-not-exist')), { stderr: null }));
    expect(e.code).toBe(ErrorCode.IOFailure);
    expect(e.message).toContain('ENOENT');
  });
});

describe('env building', () => {
  it('delegate env overrides only CNI_COMMAND', () => {
    const env = buildDelegateEnv({ CNI_COMMAND: 'ADD', CNI_IFNAME: 'eth0', X: undefined }, 'DEL');
    expect(env).toEqual({ CNI_COMMAND: 'DEL', CNI_IFNAME: 'eth0' });
  });
});

describe('VERSION probe', () => {
  it('reads a Go plugin and legacy answers', async (ctx) => {
    const log = join(pd.dir, 'version.log');
    const p = pd.script(
      'vers',
      `cat > ${log}; echo "$CNI_NETNS $CNI_IFNAME $CNI_PATH" >> ${log}; echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'`,
    );
    expect(await getVersionInfo(p, { stderr: null })).toEqual({
      cniVersion: '1.0.0',
      supportedVersions: ['0.4.0', '1.0.0'],
    });
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(log, 'utf8')).toBe('{"cniVersion":"1.1.0"}dummy dummy dummy\n');
    const old = pd.script('old', `echo '{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}'; exit 1`);
    expect((await getVersionInfo(old, { stderr: null })).supportedVersions).toEqual(['0.1.0']);
    const broken = pd.script('vbroken', `echo '{"supportedVersions":["1.0.0"]}'`);
    const e = await failure(getVersionInfo(broken, { stderr: null }));
    expect(e.message).toContain('missing field cniVersion');
    const { existsSync } = await import('node:fs');
    if (!existsSync('/usr/lib/cni/bridge')) ctx.skip('Go reference plugins not installed in /usr/lib/cni');
    const go = await getVersionInfo('/usr/lib/cni/bridge', { stderr: null });
    expect(go.supportedVersions).toContain('1.0.0');
    expect(go.supportedVersions).toContain('0.3.1');
  });

  it('decodes the 0.2.0 legacy shape', () => {
    expect(decodeVersionInfo('{"cniVersion":"0.2.0"}').supportedVersions).toEqual(['0.1.0', '0.2.0']);
    expect(() => decodeVersionInfo('{"cniVersion":"0.3.0","supportedVersions":[]}')).toThrow(
      /no supportedVersions/,
    );
    expect(() => decodeVersionInfo('nope')).toThrow(/error decoding version info: not valid JSON/);
  });
});
