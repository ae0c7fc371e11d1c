// Bridge fields that used to be accepted and ignored (ipMasqBackend, enabledad,
// disableContainerInterface, portIsolation), and F12 (a non-bridge link of the bridge's name is
// refused before anything changes), on the in-memory kernel with a recording firewall runner.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { runPlugin } from 'cni-kit';
import { type IptablesRunner, nftMasqTag } from 'cni-kit/netsetup';
import { describe, expect, it } from 'vitest';
import { createBridgePlugin } from '../../examples/bridge/plugin.js';
import { bridgeHarness } from '../helpers/bridge-harness.js';

const h = bridgeHarness('bridge-fields');
const NS = '/var/run/netns/c1';

const hostLinks = () => h.nl.inspect().links.map((l) => `${l.name}:${l.kind ?? '-'}:${l.up}`);
const allocated = (dataDir: string) =>
  existsSync(join(dataDir, 'ubr')) ? readdirSync(join(dataDir, 'ubr')).filter((f) => /^\d/.test(f)) : [];

/** Runs the bridge plugin with a firewall runner of the test's own. */
function callWith(runner: IptablesRunner, cmd: string, conf: object) {
  const env = {
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: 'ctr1',
    CNI_NETNS: NS,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/x',
  };
  return runPlugin(createBridgePlugin({ netlink: h.nl, iptables: runner }), {
    env,
    stdin: JSON.stringify(conf),
  });
}

describe('bridge: F12, a non-bridge link holding the bridge name', () => {
  it('is refused with code 7 before anything changes (the link stays down, no veth, no address)', async () => {
    await h.nl.inNetns(undefined, (ns) => ns.createLink({ kind: 'veth', name: 'ubr0', peerName: 'ubrp' }));
    const before = hostLinks();
    const c = h.conf();
    const out = await h.call('ADD', c);
    expect(out.exitCode).toBe(1);
    const e = JSON.parse(out.stdout);
    expect(e.code).toBe(7);
    expect(e.msg).toContain('bridge: "ubr0" exists but is a veth link');
    expect(hostLinks()).toEqual(before);
    expect(h.nl.inspect(NS).links.map((l) => l.name)).toEqual(['lo']);
    expect(allocated(c.ipam.dataDir)).toEqual([]);
  });
});

describe('bridge: portIsolation', () => {
  it('isolates the host veth as a bridge port; off by default', async () => {
    const on = await h.call('ADD', h.conf({ portIsolation: true }));
    expect(on.exitCode, on.stdout).toBe(0);
    const hostVeth = JSON.parse(on.stdout).interfaces[1].name;
    expect(h.nl.inspect().links.find((l) => l.name === hostVeth)).toMatchObject({
      master: 'ubr0',
      isolated: true,
    });
    const off = await h.call('ADD', h.conf(), '/var/run/netns/c2', 'ctr2');
    const other = JSON.parse(off.stdout).interfaces[1].name;
    expect(h.nl.inspect().links.find((l) => l.name === other)?.isolated).toBe(false);
  });
});

describe('bridge: disableContainerInterface', () => {
  it('leaves the container interface down on an L2-only attachment', async () => {
    const { ipam: _ipam, ...l2 } = h.conf({ disableContainerInterface: true });
    const out = await h.call('ADD', l2);
    expect(out.exitCode, out.stdout).toBe(0);
    expect(h.nl.inspect(NS).links.find((l) => l.name === 'eth0')).toMatchObject({ kind: 'veth', up: false });
    const { ipam: _i2, ...plain } = h.conf();
    expect((await h.call('ADD', plain, '/var/run/netns/c2', 'ctr2')).exitCode).toBe(0);
    expect(h.nl.inspect('/var/run/netns/c2').links.find((l) => l.name === 'eth0')?.up).toBe(true);
  });

  it('is refused together with ipam (code 7) before anything is created', async () => {
    const c = h.conf({ disableContainerInterface: true });
    const before = hostLinks();
    const out = await h.call('ADD', c);
    expect(out.exitCode).toBe(1);
    const e = JSON.parse(out.stdout);
    expect(e.code).toBe(7);
    expect(e.msg).toContain('disableContainerInterface');
    expect(hostLinks()).toEqual(before);
    expect(allocated(c.ipam.dataDir)).toEqual([]);
    // DEL of that config still succeeds.
    expect((await h.call('DEL', c)).exitCode).toBe(0);
  });
});

describe('bridge: enabledad', () => {
  const v6 = (extra: Record<string, unknown>) => {
    const c = h.conf(extra);
    return { ...c, ipam: { ...c.ipam, subnet: 'fd55::/64' } };
  };
  const sysctl = (key: string) => h.nl.inNetns(NS, (ns) => ns.getSysctl(`net/ipv6/conf/eth0/${key}`));

  it('turns DAD (enhanced) on for the container address', async () => {
    // A netns whose defaults have DAD off: enabledad must switch it on itself.
    await h.nl.inNetns(NS, (ns) => {
      ns.setSysctl('net/ipv6/conf/default/accept_dad', 0);
      ns.setSysctl('net/ipv6/conf/default/enhanced_dad', 0);
    });
    const out = await h.call('ADD', v6({ enabledad: true }));
    expect(out.exitCode, out.stdout).toBe(0);
    expect(await sysctl('accept_dad')).toBe('1');
    expect(await sysctl('enhanced_dad')).toBe('1');
  });

  it('is off by default, as the reference: accept_dad 0 on the container interface', async () => {
    const out = await h.call('ADD', v6({}));
    expect(out.exitCode, out.stdout).toBe(0);
    expect(await sysctl('accept_dad')).toBe('0');
  });
});

describe('bridge: ipMasqBackend', () => {
  it('refuses an unknown backend with code 7 naming the field', async () => {
    const out = await h.call('ADD', h.conf({ ipMasq: true, ipMasqBackend: 'ebtables' }));
    const e = JSON.parse(out.stdout);
    expect(e.code).toBe(7);
    expect(e.msg).toContain('ipMasqBackend');
  });

  it('nftables: refused with code 7 when nft cannot run, before anything changes', async () => {
    const runner: IptablesRunner = async (cmd) =>
      cmd === 'nft'
        ? { code: 127, stdout: '', stderr: 'spawn nft ENOENT' }
        : { code: 0, stdout: '', stderr: '' };
    const c = h.conf({ ipMasq: true, ipMasqBackend: 'nftables' });
    const before = hostLinks();
    const out = await callWith(runner, 'ADD', c);
    const e = JSON.parse(out.stdout);
    expect(e.code).toBe(7);
    expect(e.msg).toContain('ipMasqBackend: "nftables" needs the nft command');
    expect(hostLinks()).toEqual(before);
    expect(allocated(c.ipam.dataDir)).toEqual([]);
    expect((await callWith(runner, 'DEL', c)).exitCode).toBe(0);
  });

  it('nftables: an ADD replaces rules a killed earlier ADD of the same attachment left, in the same transaction', async () => {
    const tag = nftMasqTag('ubr', 'eth0', 'ctr1');
    const scripts: string[] = [];
    const listed = JSON.stringify({
      nftables: [{ rule: { family: 'inet', chain: 'masq_checks', handle: 3, comment: `${tag}, net: ubr` } }],
    });
    const runner: IptablesRunner = async (cmd, args, stdin) => {
      if (stdin) scripts.push(stdin);
      return { code: 0, stdout: cmd === 'nft' && args.includes('list') ? listed : '', stderr: '' };
    };
    const out = await callWith(runner, 'ADD', h.conf({ ipMasq: true, ipMasqBackend: 'nftables' }));
    expect(out.exitCode, out.stdout).toBe(0);
    expect(scripts).toHaveLength(1);
    const lines = scripts[0]!.split('\n');
    const del = lines.indexOf('delete rule inet cni_plugins_masquerade masq_checks handle 3');
    expect(del).toBeGreaterThan(0);
    expect(lines.findIndex((l) => l.includes('masquerade comment'))).toBeGreaterThan(del);
  });

  it('nftables: the reference table, chain and a per-address rule; DEL deletes only its own rules, by handle', async () => {
    const tag = nftMasqTag('ubr', 'eth0', 'ctr1');
    const scripts: string[] = [];
    let listed = '{"nftables":[]}';
    const runner: IptablesRunner = async (cmd, args, stdin) => {
      if (cmd !== 'nft') return { code: 0, stdout: '', stderr: '' };
      if (stdin) scripts.push(stdin);
      if (args.includes('list')) return { code: 0, stdout: listed, stderr: '' };
      return { code: 0, stdout: '', stderr: '' };
    };
    const c = h.conf({ ipMasq: true, ipMasqBackend: 'nftables' });
    const out = await callWith(runner, 'ADD', c);
    expect(out.exitCode, out.stdout).toBe(0);
    const s = scripts.join('');
    expect(s).toContain('add table inet cni_plugins_masquerade');
    expect(s).toContain(
      'add chain inet cni_plugins_masquerade postrouting { type nat hook postrouting priority 100 ; }',
    );
    expect(s).toContain('add rule inet cni_plugins_masquerade postrouting ip daddr 224.0.0.0/4 return');
    expect(s).toContain('add rule inet cni_plugins_masquerade postrouting goto masq_checks');
    expect(s).toMatch(
      new RegExp(
        `masq_checks ip saddr 10\\.55\\.0\\.2 ip daddr != 10\\.55\\.0\\.0/24 masquerade comment "${tag}, net: ubr, if: eth0, id: ctr1"`,
      ),
    );
    // No iptables rules for this attachment.
    expect(h.calls).toEqual([]);
    listed = JSON.stringify({
      nftables: [
        { rule: { family: 'inet', chain: 'masq_checks', handle: 7, comment: `${tag}, net: ubr` } },
        { rule: { family: 'inet', chain: 'masq_checks', handle: 8, comment: 'someone-else' } },
      ],
    });
    scripts.length = 0;
    expect((await callWith(runner, 'DEL', c)).exitCode).toBe(0);
    expect(scripts).toEqual(['delete rule inet cni_plugins_masquerade masq_checks handle 7\n']);
  });
});
