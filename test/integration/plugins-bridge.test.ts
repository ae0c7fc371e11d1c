// Our bridge binary in real network namespaces with our host-local IPAM: reachability, CHECK,
// DEL (twice, and after the netns is gone), the ipMasq chains it leaves in iptables, and bridge
// VLANs where the kernel has VLAN filtering (a clear refusal where it has not).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { linuxNetlink } from 'cni-kit/netlink';
import { masqChainName, setupIpMasq, spoofChainName, teardownMacSpoofCheck } from 'cni-kit/netsetup';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { SPOOFCHK_TABLE } from '../../src/netsetup/spoofchk.js';
import { execPlugin } from '../helpers/plugin.js';

const tag = `pbr${process.pid % 100000}`;
const net = `172.${16 + (process.pid % 16)}.41`;
const bridge = `${tag}b`;
const vlanBridge = `${tag}v`;
const netnses: string[] = [];
let work: string;

function need(ctx: TestContext): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
  if (spawnSync('ping', ['-V']).status !== 0) ctx.skip('iputils-ping not installed');
}

function newNetns(suffix: string): string {
  const name = `${tag}-${suffix}`;
  spawnSync('ip', ['netns', 'del', name]);
  execFileSync('ip', ['netns', 'add', name]);
  netnses.push(name);
  return `/var/run/netns/${name}`;
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
});
afterAll(async () => {
  await teardownMacSpoofCheck('c-s', 'eth0').catch(() => {});
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  spawnSync('ip', ['link', 'del', bridge]);
  spawnSync('ip', ['link', 'del', `${vlanBridge}.42`]);
  spawnSync('ip', ['link', 'del', vlanBridge]);
  for (const cid of ['c-a', 'c-b', 'c-m']) {
    const chain = masqChainName(`${tag}net`, cid);
    spawnSync('sh', [
      '-c',
      `iptables-save -t nat | grep -- '-j ${chain}' | sed 's/^-A/-D/' | xargs -r -L1 iptables -t nat; iptables -t nat -F ${chain}; iptables -t nat -X ${chain}`,
    ]);
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

const conf = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    cniVersion: '1.0.0',
    name: `${tag}net`,
    type: 'bridge',
    bridge,
    isGateway: true,
    ipam: { type: 'host-local', subnet: `${net}.0/24`, dataDir: join(work, 'ipam') },
    ...extra,
  });

const env = (cmd: string, cid: string, netns: string) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: cid,
  CNI_NETNS: netns,
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/usr/lib/cni',
});

const ping = (netns: string, ip: string) =>
  spawnSync('ip', ['netns', 'exec', netns.split('/').pop() ?? '', 'ping', '-c1', '-W2', ip]).status;

const reserved = () => readdirSync(join(work, 'ipam', `${tag}net`)).filter((f) => /^\d/.test(f));

describe('bridge binary (real netns)', () => {
  it('two containers reach each other and the gateway; CHECK; DEL frees everything, twice', (ctx) => {
    need(ctx);
    const a = newNetns('a');
    const b = newNetns('b');
    const ra = execPlugin('bridge', env('ADD', 'c-a', a), conf());
    expect(ra.status, ra.stdout + ra.stderr).toBe(0);
    const rb = execPlugin('bridge', env('ADD', 'c-b', b), conf());
    expect(rb.status, rb.stdout + rb.stderr).toBe(0);
    const resA = ra.json as {
      ips: Array<{ address: string; gateway: string }>;
      interfaces: Array<{ name: string }>;
    };
    const resB = rb.json as typeof resA;
    const ipB = resB.ips[0]?.address.split('/')[0] ?? '';
    expect(ping(a, ipB)).toBe(0);
    expect(ping(b, `${net}.1`)).toBe(0);
    expect(resA.ips[0]?.gateway).toBe(`${net}.1`);

    const check = execPlugin(
      'bridge',
      env('CHECK', 'c-a', a),
      JSON.stringify({ ...JSON.parse(conf()), prevResult: ra.json }),
    );
    expect(check.status, check.stdout).toBe(0);
    expect(reserved()).toHaveLength(2);

    const hostVeth = resA.interfaces[1]?.name ?? '';
    const del = execPlugin('bridge', env('DEL', 'c-a', a), conf());
    expect(del.status, del.stdout).toBe(0);
    expect(spawnSync('ip', ['link', 'show', hostVeth]).status).not.toBe(0);
    expect(spawnSync('ip', ['-n', `${tag}-a`, 'link', 'show', 'eth0']).status).not.toBe(0);
    expect(reserved()).toHaveLength(1);
    expect(execPlugin('bridge', env('DEL', 'c-a', a), conf()).status).toBe(0);
    // B still works after A left.
    expect(ping(b, `${net}.1`)).toBe(0);
    expect(execPlugin('bridge', env('DEL', 'c-b', b), conf()).status).toBe(0);
    expect(reserved()).toHaveLength(0);
  });

  it('macspoofchk drops frames once the container changes its MAC; DEL removes the nft chain', (ctx) => {
    need(ctx);
    if (spawnSync('nft', ['list', 'tables']).status !== 0) ctx.skip('nft not available');
    const s = newNetns('s');
    const add = execPlugin('bridge', env('ADD', 'c-s', s), conf({ macspoofchk: true }));
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const chain = spoofChainName('c-s', 'eth0');
    expect(execFileSync('nft', ['list', 'table', 'bridge', SPOOFCHK_TABLE], { encoding: 'utf8' })).toContain(
      chain,
    );
    expect(ping(s, `${net}.1`)).toBe(0);
    execFileSync('ip', ['-n', `${tag}-s`, 'link', 'set', 'eth0', 'address', '02:42:42:42:42:42']);
    execFileSync('ip', ['-n', `${tag}-s`, 'neigh', 'flush', 'all']);
    expect(ping(s, `${net}.1`)).not.toBe(0);
    expect(execPlugin('bridge', env('DEL', 'c-s', s), conf({ macspoofchk: true })).status).toBe(0);
    const after = spawnSync('nft', ['list', 'table', 'bridge', SPOOFCHK_TABLE], { encoding: 'utf8' }).stdout;
    expect(after).not.toContain(chain);
  });

  it('ipMasq installs the CNI-<hash> chain and DEL removes it even after the netns is gone', async (ctx) => {
    need(ctx);
    const m = newNetns('m');
    const add = execPlugin('bridge', env('ADD', 'c-m', m), conf({ ipMasq: true }));
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const chain = masqChainName(`${tag}net`, 'c-m');
    const saved = execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' });
    expect(saved).toContain(`-j ${chain}`);
    expect(saved).toMatch(new RegExp(`-A ${chain} ! -d 224\\.0\\.0\\.0/4 .*-j MASQUERADE`));
    // Setting the same masquerade up again (an ADD retried by the runtime) does not double the jump.
    await setupIpMasq(
      (add.json as { ips: Array<{ address: string }> }).ips[0]?.address ?? '',
      `${tag}net`,
      'c-m',
    );
    const again = execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' });
    expect(again.split('\n').filter((l) => l.includes(`-j ${chain}`))).toHaveLength(1);
    spawnSync('ip', ['netns', 'del', `${tag}-m`]);
    const del = execPlugin('bridge', env('DEL', 'c-m', m), conf({ ipMasq: true }));
    expect(del.status, del.stdout).toBe(0);
    const after = execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' });
    expect(after).not.toContain(chain);
    expect(existsSync(m)).toBe(false);
  });

  it('vlan: the port is an access port of a vlan_filtering bridge and reaches the VLAN gateway', async (ctx) => {
    need(ctx);
    if (!(await linuxNetlink().supportsBridgeVlans())) ctx.skip('kernel has no bridge VLAN filtering');
    const v = newNetns('v');
    const c = conf({ bridge: vlanBridge, vlan: 42, preserveDefaultVlan: false });
    const add = execPlugin('bridge', env('ADD', 'c-v', v), c);
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const res = add.json as { interfaces: Array<{ name: string }> };
    const port = res.interfaces[1]?.name ?? '';
    expect(res.interfaces[3]?.name).toBe(`${vlanBridge}.42`);
    const details = JSON.parse(
      execFileSync('ip', ['-j', '-d', 'link', 'show', vlanBridge], { encoding: 'utf8' }),
    );
    expect(details[0]?.linkinfo?.info_data?.vlan_filtering).toBe(1);
    const shown = JSON.parse(
      execFileSync('bridge', ['-j', 'vlan', 'show', 'dev', port], { encoding: 'utf8' }),
    );
    const vlans = (shown as Array<{ ifname: string; vlans: Array<{ vlan: number; flags?: string[] }> }>).find(
      (e) => e.ifname === port,
    )?.vlans;
    expect(vlans).toEqual([{ vlan: 42, flags: ['PVID', 'Egress Untagged'] }]);
    expect(ping(v, `${net}.1`)).toBe(0);
    const check = execPlugin(
      'bridge',
      env('CHECK', 'c-v', v),
      JSON.stringify({ ...JSON.parse(c), prevResult: add.json }),
    );
    expect(check.status, check.stdout).toBe(0);
    expect(execPlugin('bridge', env('DEL', 'c-v', v), c).status).toBe(0);
    expect(spawnSync('ip', ['link', 'show', port]).status).not.toBe(0);
  });

  it('vlan on a kernel without bridge VLAN filtering fails clearly and leaves nothing behind', async (ctx) => {
    need(ctx);
    if (await linuxNetlink().supportsBridgeVlans())
      ctx.skip('kernel has bridge VLAN filtering (the success path is tested instead)');
    const n = newNetns('n');
    const add = execPlugin(
      'bridge',
      env('ADD', 'c-n', n),
      conf({ bridge: vlanBridge, vlanTrunk: [{ id: 42 }] }),
    );
    expect(add.json).toMatchObject({
      code: 999,
      msg: 'vlanTrunk needs bridge VLAN filtering, which this kernel does not have',
    });
    const left = execFileSync('ip', ['-n', `${tag}-n`, '-o', 'link', 'show'], { encoding: 'utf8' });
    expect(left.trim().split('\n')).toHaveLength(1);
    expect(spawnSync('ip', ['link', 'show', vlanBridge]).status).not.toBe(0);
  });
});
