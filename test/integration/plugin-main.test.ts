// pluginMain end to end: the debug example runs as a real process for every path of the skel.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cniEnv, execPlugin } from '../helpers/plugin.js';

const conf = (o: Record<string, unknown> = {}) =>
  JSON.stringify({
    cniVersion: '1.1.0',
    name: 'dbg',
    type: 'debug',
    ips: ['10.9.0.5/24'],
    gateway: '10.9.0.1',
    ...o,
  });

/** Asserts the exact error shape: one JSON document, the right code, exit status 1. */
function expectError(r: ReturnType<typeof execPlugin>, code: number, msg: RegExp, cniVersion = '1.1.0') {
  expect(r.status).toBe(1);
  expect(r.json, `stdout was: ${r.stdout}`).toBeDefined();
  const e = r.json as Record<string, unknown>;
  expect(Object.keys(e).sort()).toEqual(
    e.details === undefined ? ['cniVersion', 'code', 'msg'] : ['cniVersion', 'code', 'details', 'msg'],
  );
  expect(e.cniVersion).toBe(cniVersion);
  expect(e.code).toBe(code);
  expect(`${e.msg} ${e.details ?? ''}`).toMatch(msg);
  expect(r.stdout).not.toMatch(/\bat .*\(.*:\d+:\d+\)/); // no stack trace on stdout
  return e;
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('pluginMain as a process', () => {
  it('VERSION answers without reading stdin', () => {
    const r = execPlugin('debug', { CNI_COMMAND: 'VERSION' });
    expect(r.status).toBe(0);
    expect(r.json).toEqual({
      cniVersion: '1.1.0',
      supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    });
  });

  it('no CNI_COMMAND prints the about line on stderr and exits 0', () => {
    const r = execPlugin('debug', {});
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^debug: .*\nCNI protocol versions supported: 0\.1\.0, /);
  });

  it('ADD returns the result converted to the config version, and records its input', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ck-skel-'));
    dirs.push(dir);
    const rec = join(dir, 'rec.jsonl');
    for (const [v, check] of [
      [
        '1.1.0',
        (j: Record<string, unknown>) =>
          expect(j.ips).toEqual([{ interface: 0, address: '10.9.0.5/24', gateway: '10.9.0.1' }]),
      ],
      [
        '0.4.0',
        (j: Record<string, unknown>) =>
          expect((j.ips as Array<Record<string, unknown>>)[0]?.version).toBe('4'),
      ],
      [
        '0.2.0',
        (j: Record<string, unknown>) => expect(j.ip4).toEqual({ ip: '10.9.0.5/24', gateway: '10.9.0.1' }),
      ],
    ] as const) {
      const r = execPlugin(
        'debug',
        cniEnv('ADD', { CNI_ARGS: 'K8S_POD_NAME=web' }),
        conf({ cniVersion: v, recordFile: rec }),
      );
      expect(r.status, r.stdout).toBe(0);
      const j = r.json as Record<string, unknown>;
      expect(j.cniVersion).toBe(v);
      check(j);
    }
    const lines = readFileSync(rec, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(3);
    expect(lines[0].command).toBe('ADD');
    expect(lines[0].env.CNI_ARGS).toBe('K8S_POD_NAME=web');
    expect(lines[2].config.cniVersion).toBe('0.2.0');
  });

  it('prevResult of an older version is handed to the plugin as the current type', () => {
    const prev = { cniVersion: '0.3.1', ips: [{ version: '4', address: '10.8.0.2/24' }], dns: {} };
    const r = execPlugin('debug', cniEnv('ADD'), conf({ cniVersion: '0.4.0', prevResult: prev, ips: [] }));
    expect(r.status, r.stdout).toBe(0);
    expect((r.json as { ips: unknown[] }).ips).toEqual([{ version: '4', address: '10.8.0.2/24' }]);
  });

  it('DEL, CHECK, GC and STATUS print nothing on success', () => {
    for (const cmd of ['DEL', 'CHECK', 'GC', 'STATUS']) {
      const r = execPlugin(
        'debug',
        cniEnv(cmd),
        conf({ 'cni.dev/valid-attachments': [{ containerID: 'c', ifname: 'eth0' }] }),
      );
      expect(r.status, `${cmd}: ${r.stdout}`).toBe(0);
      expect(r.stdout).toBe('');
    }
  });

  it('missing env vars are code 4 and named', () => {
    const r = execPlugin('debug', { CNI_COMMAND: 'ADD', CNI_IFNAME: 'eth0' }, conf());
    expectError(r, 4, /required env variables \[CNI_CONTAINERID,CNI_NETNS\] missing/);
    const del = execPlugin('debug', { CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c' }, conf());
    expectError(del, 4, /\[CNI_IFNAME\] missing/);
  });

  it('an unknown command is code 4', () => {
    expectError(execPlugin('debug', cniEnv('FROB'), conf()), 4, /unknown CNI_COMMAND: FROB/);
  });

  it('bad identifiers: container ID code 4, interface name code 4', () => {
    expectError(
      execPlugin('debug', cniEnv('ADD', { CNI_CONTAINERID: 'a b' }), conf()),
      4,
      /invalid characters in containerID/,
    );
    expectError(execPlugin('debug', cniEnv('ADD', { CNI_IFNAME: 'x'.repeat(16) }), conf()), 4, /too long/);
    expectError(
      execPlugin('debug', cniEnv('ADD', { CNI_ARGS: 'JUNK' }), conf()),
      4,
      /CNI_ARGS: "JUNK" is not KEY=VALUE/,
    );
  });

  it('undecodable stdin is code 6, an invalid config code 7', () => {
    expectError(execPlugin('debug', cniEnv('ADD'), '{"cniVersion":'), 6, /error decoding network config/);
    expectError(execPlugin('debug', cniEnv('ADD'), ''), 6, /error decoding network config/);
    expectError(
      execPlugin('debug', cniEnv('ADD'), conf({ ipam: [] })),
      7,
      /ipam: \[\] must be an object; use an object such as/,
    );
  });

  it('an unsupported version is code 1 and lists the supported ones', () => {
    expectError(
      execPlugin('debug', cniEnv('ADD'), conf({ cniVersion: '2.0.0' })),
      1,
      /config is "2.0.0", plugin supports \["0.1.0" .*"1.1.0"\]/,
      '1.1.0',
    );
    expectError(
      execPlugin('debug', cniEnv('CHECK'), conf({ cniVersion: '0.3.1' })),
      1,
      /does not allow CHECK/,
      '0.3.1',
    );
    expectError(
      execPlugin('debug', cniEnv('GC'), conf({ cniVersion: '1.0.0' })),
      1,
      /does not allow GC/,
      '1.0.0',
    );
    expectError(
      execPlugin('debug', cniEnv('STATUS'), conf({ cniVersion: '0.4.0' })),
      1,
      /does not allow STATUS/,
      '0.4.0',
    );
  });

  it("a plugin's CniError keeps its code; any other error is code 999 without a stack on stdout", () => {
    const e = expectError(
      execPlugin(
        'debug',
        cniEnv('ADD'),
        conf({ fail: { code: 123, msg: 'custom failure', details: 'why' } }),
      ),
      123,
      /custom failure why/,
    );
    expect(e.details).toBe('why');
    const r = execPlugin('debug', cniEnv('DEL'), conf({ throw: 'boom\nsecond line' }));
    expectError(r, 999, /^boom $/);
    expect(r.stderr).toMatch(/Error: boom/); // the stack goes to stderr for the operator
  });

  it('a result that cannot be expressed in the config version is refused, not half printed', () => {
    const r = execPlugin('debug', cniEnv('ADD'), conf({ cniVersion: '0.2.0', ips: [] }));
    expectError(r, 1, /no valid IP addresses/, '0.2.0');
  });
});
