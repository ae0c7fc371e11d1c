// dist/bin/host-local and dist/bin/static as a runtime runs them: VERSION, GC with
// cni.dev/valid-attachments, STATUS on a full range, and error JSON that names the field.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { pluginDir } from '../helpers/mode.js';

const BIN = pluginDir();
const root = mkdtempSync(join(tmpdir(), `cnikit-hl-bin-${process.pid}-`));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function run(type: string, command: string, conf: unknown, id = 'c1') {
  const r = spawnSync(join(BIN, type), [], {
    input: JSON.stringify(conf),
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: '/var/run/netns/none',
      CNI_IFNAME: 'eth0',
      CNI_PATH: BIN,
    },
  });
  return { code: r.status, json: r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined };
}

const conf = (name: string, subnet: string, extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.1.0',
  name,
  type: 'bridge',
  ipam: { type: 'host-local', dataDir: root, subnet },
  ...extra,
});

describe('host-local binary', () => {
  it('answers VERSION with every spec version', () => {
    const r = run('host-local', 'VERSION', { cniVersion: '1.1.0' });
    expect(r.code).toBe(0);
    expect(r.json?.supportedVersions).toEqual([
      '0.1.0',
      '0.2.0',
      '0.3.0',
      '0.3.1',
      '0.4.0',
      '1.0.0',
      '1.1.0',
    ]);
  });

  it('GC keeps the valid attachments and frees the rest', () => {
    const c = conf('gc', '10.60.0.0/24');
    for (const id of ['a', 'b', 'c']) expect(run('host-local', 'ADD', c, id).code).toBe(0);
    const gc = run(
      'host-local',
      'GC',
      { ...c, 'cni.dev/valid-attachments': [{ containerID: 'b', ifname: 'eth0' }] },
      '',
    );
    expect(gc.code).toBe(0);
    expect(readdirSync(join(root, 'gc')).filter((f) => f.startsWith('10.'))).toEqual(['10.60.0.3']);
  });

  it('STATUS is fine with room and code 50 when the range is full', () => {
    const c = conf('st', '10.61.0.0/30');
    expect(run('host-local', 'STATUS', c, '').code).toBe(0);
    expect(run('host-local', 'ADD', c, 'only').code).toBe(0);
    const s = run('host-local', 'STATUS', c, '');
    expect(s.code).not.toBe(0);
    expect(s.json?.code).toBe(50);
    const add = run('host-local', 'ADD', c, 'more');
    expect(String(add.json?.msg)).toContain('no IP addresses available in range set: 10.61.0.1-10.61.0.2');
  });

  it('prints a 0.2.0 result for a 0.2.0 config', () => {
    const r = run('host-local', 'ADD', { ...conf('old', '10.62.0.0/24'), cniVersion: '0.2.0' });
    expect(r.code).toBe(0);
    expect(r.json).toMatchObject({ cniVersion: '0.2.0', ip4: { ip: '10.62.0.2/24', gateway: '10.62.0.1' } });
  });

  it('bad config: code 7 and a message naming the field, the value and the fix', () => {
    const r = run('host-local', 'ADD', conf('bad', '10.63.0.1/24'));
    expect(r.json?.code).toBe(7);
    expect(r.json?.msg).toBe(
      'ipam.subnet: "10.63.0.1/24" has host bits set; for a /24 the network address is 10.63.0.0, use 10.63.0.0/24',
    );
  });
});
