// `cni-kit conform` against every plugin cni-kit builds (dist/bin): they pass every check, where
// the kernel has the link kind (ipvlan and vlan skip with a message otherwise); debug, a recording
// stub, fails exactly add-state.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BY_DESIGN_LEFTOVERS } from '../../src/conform/index.js';
import {
  conform,
  detailsOf,
  expectAllPass,
  extraNetns,
  failedIds,
  failures,
  filesUnder,
  freshDir,
  hostLocal,
  MACVLAN_MASTER,
  need,
  nextSeq,
  ours,
  PREV_RESULT,
  passedIds,
  tag,
  useConformSuite,
} from '../helpers/conform.js';
import { BIN_DIR } from '../helpers/plugin.js';

useConformSuite();

// The link-kind cases also run in the kernel lane, where Node is several times slower under
// emulation: there they check one version (the kind-specific part is the same at every version).
const inLane = process.env.CNI_KIT_IN_VM === '1';
const LANE_VERSIONS = inLane ? ['1.1.0'] : ['0.3.1', '1.1.0'];
const LANE_TIMEOUT = inLane ? 300_000 : 120_000;

describe.concurrent('our plugins (dist/bin) pass', () => {
  it('bridge + host-local with ipMasq, at 0.2.0, 0.4.0 and 1.1.0', async (ctx) => {
    need(ctx, ours('bridge'));
    const ipam = hostLocal('10.77.0.0/24');
    const config = { type: 'bridge', bridge: 'ckbr0', isGateway: true, ipMasq: true, ipam };
    const r = await conform(ours('bridge'), config, { versions: ['0.2.0', '0.4.0', '1.1.0'] });
    expectAllPass(r, ['0.2.0', '0.4.0', '1.1.0']);
    expect(passedIds(r)).toEqual(expect.arrayContaining(['check@0.4.0', 'gc@1.1.0', 'status@1.1.0']));
    // What host-local keeps is exactly what the allowlist names.
    expect(filesUnder(ipam.dataDir).filter((f) => !BY_DESIGN_LEFTOVERS.isDataFile(f))).toEqual([]);
    expect(filesUnder(ipam.dataDir)).toContain('lock');
  }, 120_000);

  it('ptp + host-local with ipMasq', async (ctx) => {
    need(ctx, ours('ptp'));
    const r = await conform(
      ours('ptp'),
      { type: 'ptp', ipMasq: true, ipam: hostLocal('10.78.0.0/24') },
      {
        versions: ['0.3.1', '1.1.0'],
      },
    );
    expectAllPass(r, ['0.3.1', '1.1.0']);
  }, 120_000);

  it('macvlan + host-local on a master made by --node-setup', async (ctx) => {
    need(ctx, ours('macvlan'));
    const config = { type: 'macvlan', master: 'eth0', mode: 'bridge', ipam: hostLocal('10.79.0.0/24') };
    const r = await conform(ours('macvlan'), config, {
      versions: ['0.3.1', '1.1.0'],
      nodeSetup: MACVLAN_MASTER,
    });
    expectAllPass(r, ['0.3.1', '1.1.0']);
  }, 120_000);

  it('host-local on its own, dual stack', async (ctx) => {
    need(ctx, ours('host-local'));
    const ipam = {
      type: 'host-local',
      ranges: [[{ subnet: '10.80.0.0/24' }], [{ subnet: 'fd80::/64' }]],
      dataDir: freshDir('ipam'),
    };
    const r = await conform(
      ours('host-local'),
      { type: 'host-local', ipam },
      { versions: ['0.2.0', '1.1.0'] },
    );
    expectAllPass(r, ['0.2.0', '1.1.0']);
  }, 120_000);

  it('static (its addresses are the same for every container by design)', async (ctx) => {
    need(ctx, ours('static'));
    const ipam = { type: 'static', addresses: [{ address: '10.81.0.5/24', gateway: '10.81.0.1' }] };
    const r = await conform(ours('static'), { type: 'static', ipam }, { versions: ['0.3.1', '1.1.0'] });
    expectAllPass(r, ['0.3.1', '1.1.0']);
    expect(r.checks.find((c) => c.check === 'concurrent-addresses')?.status).toBe('skip');
  }, 120_000);

  it('whereabouts on its file store', async (ctx) => {
    need(ctx, ours('whereabouts'));
    const data = freshDir('whereabouts');
    const ipam = { type: 'whereabouts', range: '10.91.0.0/24', datastore: 'file', data_dir: data };
    const r = await conform(
      ours('whereabouts'),
      { type: 'whereabouts', ipam },
      { versions: ['0.3.1', '1.1.0'], dataDirs: [data] },
    );
    expectAllPass(r, ['0.3.1', '1.1.0']);
    expect(r.checks.filter((c) => c.check === 'concurrent-addresses').map((c) => c.status)).toEqual([
      'pass',
      'pass',
    ]);
  }, 120_000);

  it("flannel, delegating to our bridge + host-local from a subnet.env of the test's own", async (ctx) => {
    need(ctx, ours('flannel'));
    const dir = freshDir('flannel');
    writeFileSync(
      join(dir, 'subnet.env'),
      // flanneld masquerades (FLANNEL_IPMASQ=true), so the delegate bridge does not.
      'FLANNEL_NETWORK=10.92.0.0/16\nFLANNEL_SUBNET=10.92.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
    );
    const config = {
      type: 'flannel',
      subnetFile: join(dir, 'subnet.env'),
      dataDir: join(dir, 'data'),
      delegate: { bridge: `ckfl${nextSeq()}` },
      // Merged into the host-local IPAM flannel builds: its state stays in the test's directory.
      ipam: { dataDir: join(dir, 'ipam') },
    };
    const r = await conform(ours('flannel'), config, {
      versions: ['0.3.1', '1.1.0'],
      cniPath: [BIN_DIR],
      dataDirs: [join(dir, 'data'), join(dir, 'ipam')],
    });
    expectAllPass(r, ['0.3.1', '1.1.0']);
  }, 120_000);

  it('multus in delegates mode (no Kubernetes), with our bridge + host-local as the cluster network', async (ctx) => {
    need(ctx, ours('multus'));
    const dir = freshDir('multus');
    const config = {
      type: 'multus',
      cniDir: join(dir, 'cache'),
      binDir: BIN_DIR,
      delegates: [
        {
          cniVersion: '1.0.0',
          name: `${tag}-mucluster`,
          type: 'bridge',
          bridge: `ckmu${nextSeq()}`,
          isGateway: true,
          ipam: hostLocal('10.93.0.0/24'),
        },
      ],
    };
    const r = await conform(ours('multus'), config, {
      versions: ['0.3.1', '1.1.0'],
      cniPath: [BIN_DIR],
      dataDirs: [join(dir, 'cache')],
    });
    expectAllPass(r, ['0.3.1', '1.1.0']);
  }, 120_000);

  it('host-device, taking a veth that --container-setup makes for each container (one at a time)', async (ctx) => {
    need(ctx, ours('host-device'));
    const r = await conform(
      ours('host-device'),
      { type: 'host-device', device: 'ckhd0' },
      {
        versions: ['0.3.1', '1.1.0'],
        concurrency: 1,
        containerSetup: 'ip link show ckhd0 >/dev/null 2>&1 || ip link add ckhd0 type veth peer name ckhd0p',
      },
    );
    expectAllPass(r, ['0.3.1', '1.1.0']);
  }, 120_000);

  it('loopback', async (ctx) => {
    need(ctx, ours('loopback'));
    const r = await conform(
      ours('loopback'),
      { type: 'loopback' },
      { versions: ['0.3.1', '1.1.0'], ifname: 'lo' },
    );
    expectAllPass(r, ['0.3.1', '1.1.0']);
  }, 120_000);

  it('tuning, chained after a prevResult fixture', async (ctx) => {
    need(ctx, ours('tuning'));
    const config = {
      type: 'tuning',
      mtu: 1400,
      promisc: true,
      mac: '0a:58:0a:d3:00:99',
      sysctl: { 'net.ipv4.conf.eth0.accept_redirects': '1' },
      dataDir: freshDir('tuning'),
    };
    const r = await conform(ours('tuning'), config, {
      versions: ['0.3.1', '1.1.0'],
      prevResult: PREV_RESULT,
    });
    expectAllPass(r, ['0.3.1', '1.1.0']);
  }, 120_000);

  // Left out, each for a reason: flannel and multus are meta plugins that need flanneld's subnet
  // file or a cluster; whereabouts needs an etcd or Kubernetes store; host-device consumes its
  // device (a virtual one dies with the netns, a physical one goes back to the host's root netns).
  // ipvlan and vlan run where the kernel has the link kind (this CI kernel has neither).
  function hasLinkKind(kind: 'ipvlan' | 'vlan'): boolean {
    const ns = `${tag}-probe-${kind}`;
    spawnSync('ip', ['netns', 'add', ns]);
    extraNetns.push(ns);
    spawnSync('ip', ['-n', ns, 'link', 'add', 'm0', 'type', 'bridge']);
    const extra = kind === 'vlan' ? ['id', '10'] : [];
    const ok =
      spawnSync('ip', ['-n', ns, 'link', 'add', 'k0', 'link', 'm0', 'type', kind, ...extra]).status === 0;
    spawnSync('ip', ['netns', 'del', ns]);
    return ok;
  }

  it(
    'ipvlan + host-local, where the kernel has ipvlan',
    async (ctx) => {
      need(ctx, ours('ipvlan'));
      if (!hasLinkKind('ipvlan')) ctx.skip('this kernel has no ipvlan link kind');
      const config = { type: 'ipvlan', master: 'eth0', ipam: hostLocal('10.82.0.0/24') };
      const r = await conform(ours('ipvlan'), config, {
        versions: LANE_VERSIONS,
        nodeSetup: MACVLAN_MASTER,
      });
      expectAllPass(r, LANE_VERSIONS);
    },
    LANE_TIMEOUT,
  );

  // One VLAN ID per master exists once, so concurrent attachments of one vlan config cannot all
  // succeed by design: concurrency 1.
  it(
    'vlan + host-local, where the kernel has vlan',
    async (ctx) => {
      need(ctx, ours('vlan'));
      if (!hasLinkKind('vlan')) ctx.skip('this kernel has no vlan link kind');
      const config = { type: 'vlan', master: 'eth0', vlanId: 10, ipam: hostLocal('10.88.0.0/24') };
      const opts = { versions: LANE_VERSIONS, nodeSetup: MACVLAN_MASTER, concurrency: 1 };
      expectAllPass(await conform(ours('vlan'), config, opts), LANE_VERSIONS);
    },
    LANE_TIMEOUT,
  );

  // debug is a recording stub: its result lists CNI_IFNAME in the container, which it never
  // creates, so add-state fails ("interfaces[0] eth0 is not in the container netns").
  it('debug fails add-state only: it reports an interface it does not create', async (ctx) => {
    need(ctx, ours('debug'));
    const r = await conform(ours('debug'), { type: 'debug', ips: ['10.95.0.5/24'] }, { versions: ['1.1.0'] });
    expect(failedIds(r), failures(r).join('\n')).toEqual(['add-state']);
    expect(detailsOf(r, 'add-state').join('\n')).toContain(
      'interfaces[0] eth0 is not in the container netns',
    );
  }, 120_000);
});
