// The whereabouts binary (dist/bin/whereabouts, as a runtime execs it): ADD/CHECK/DEL/GC/STATUS
// on the file store and on a real etcd, result versions, and errors as CNI error JSON.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';
import { DAEMON_MODE, pluginDir } from '../helpers/mode.js';

// WHEREABOUTS_BIN lets the same checks run against another build of the plugin.
const bin =
  process.env.WHEREABOUTS_BIN ??
  (DAEMON_MODE
    ? join(pluginDir(), 'whereabouts')
    : fileURLToPath(new URL('../../dist/bin/whereabouts', import.meta.url)));
const tmp = mkdtempSync(join(tmpdir(), `wbplugin-${process.pid}-`));
let etcd: TestEtcd | undefined;

beforeAll(async () => {
  if (!existsSync(bin)) {
    spawnSync(process.execPath, [
      fileURLToPath(new URL('../../scripts/build-bins.mjs', import.meta.url)),
      'whereabouts',
    ]);
  }
  if (hasEtcd()) etcd = await startEtcd('wbplugin');
});
afterAll(async () => {
  await etcd?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

interface Call {
  code: number | null;
  out: Record<string, unknown>;
}

function call(command: string, conf: object, id = '', ifname = '', args = ''): Call {
  const r = spawnSync(bin, [], {
    input: JSON.stringify(conf),
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: id ? '/proc/self/ns/net' : '',
      CNI_IFNAME: ifname,
      CNI_PATH: '/usr/lib/cni',
      CNI_ARGS: args,
    },
    encoding: 'utf8',
  });
  return { code: r.status, out: r.stdout.trim() ? (JSON.parse(r.stdout) as Record<string, unknown>) : {} };
}

const conf = (cniVersion: string, ipam: object) => ({ cniVersion, name: 'wbplugin', type: 'macvlan', ipam });

describe.each([
  { name: 'file', store: () => ({ datastore: 'file', data_dir: join(tmp, 'file') }) },
  {
    name: 'etcd',
    store: () => (etcd ? { datastore: 'etcd', etcd_host: etcd.url, etcd_prefix: '/wbplugin' } : undefined),
  },
])('dist/bin/whereabouts on the $name store', ({ store }) => {
  it('ADD is idempotent, CHECK passes, DEL frees and repeats cleanly, GC collects the rest', (ctx) => {
    const s = store();
    if (!s) ctx.skip('no /usr/bin/etcd on this machine');
    const c = conf('1.1.0', { type: 'whereabouts', range: '10.60.0.0/24', gateway: '10.60.0.1', ...s });
    const pod = 'K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0';
    const a = call('ADD', c, 'ctr-a', 'net1', pod);
    expect(a.code).toBe(0);
    expect(a.out.ips).toEqual([{ address: '10.60.0.2/24', gateway: '10.60.0.1' }]);
    expect(call('ADD', c, 'ctr-a', 'net1', pod).out.ips).toEqual(a.out.ips);
    expect(call('CHECK', { ...c, prevResult: a.out }, 'ctr-a', 'net1').code).toBe(0);
    const b = call('ADD', c, 'ctr-b', 'net1');
    expect(b.out.ips).toEqual([{ address: '10.60.0.3/24', gateway: '10.60.0.1' }]);
    expect(call('DEL', c, 'ctr-a', 'net1').code).toBe(0);
    expect(call('DEL', c, 'ctr-a', 'net1').code).toBe(0);
    const gc = call('GC', { ...c, 'cni.dev/valid-attachments': [] });
    expect(gc.code).toBe(0);
    // Both addresses are free again: the round-robin cursor moves on, the next range pass reuses them.
    expect(call('STATUS', c).code).toBe(0);
    const again = call('ADD', c, 'ctr-c', 'net1');
    expect(again.out.ips).toEqual([{ address: '10.60.0.4/24', gateway: '10.60.0.1' }]);
    call('DEL', c, 'ctr-c', 'net1');
  });

  it('prints a 0.4.0 result for a 0.4.0 config and a CNI error naming the field for bad input', (ctx) => {
    const s = store();
    if (!s) ctx.skip('no /usr/bin/etcd on this machine');
    const old = call(
      'ADD',
      conf('0.4.0', { type: 'whereabouts', range: 'fd00:60::/64', ...s }),
      'ctr-v6',
      'eth0',
    );
    expect(old.code).toBe(0);
    expect(old.out).toMatchObject({ cniVersion: '0.4.0', ips: [{ version: '6', address: 'fd00:60::1/64' }] });
    const bad = call(
      'ADD',
      conf('1.0.0', { type: 'whereabouts', range: '10.60.0.0/24', exclude: ['10.60.0.x'], ...s }),
      'x',
      'eth0',
    );
    expect(bad.code).not.toBe(0);
    expect(bad.out.code).toBe(7);
    expect(String(bad.out.msg)).toMatch(/ipam\.exclude\[0\].*10\.60\.0\.x/);
  });
});
