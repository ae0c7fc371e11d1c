// The conformance kit over macvlan + the dhcp IPAM: our macvlan and the Go 1.1.1 macvlan, both
// with our dhcp plugin and `startDhcpDaemon()`, against dnsmasq started by --node-setup in the
// kit's node netns (on the far end of the veth that is the macvlan master).
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type DhcpDaemon, linuxDhcpNet, startDhcpDaemon } from 'cni-kit/ipam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  conform,
  expectAllPass,
  freshDir,
  GO,
  need,
  ours,
  passedIds,
  useConformSuite,
} from '../helpers/conform.js';
import { hasDnsmasq } from '../helpers/dnsmasq.js';
import { BIN_DIR } from '../helpers/plugin.js';

useConformSuite();

describe('macvlan + dhcp pass the conformance kit', () => {
  let daemon: DhcpDaemon | undefined;
  let dir = '';
  const dnsmasqDirs: string[] = [];

  beforeAll(async () => {
    if (process.getuid?.() !== 0 || !hasDnsmasq()) return;
    dir = freshDir('dhcpd');
    daemon = await startDhcpDaemon({
      socketPath: join(dir, 'dhcp.sock'),
      net: await linuxDhcpNet(),
      log: () => {},
      timing: { timeoutMs: 2000, resendTimeoutMs: 10_000 },
    });
  });
  afterAll(async () => {
    await daemon?.close();
    for (const d of dnsmasqDirs) {
      try {
        process.kill(Number(readFileSync(join(d, 'pid'), 'utf8').trim()), 'SIGTERM');
      } catch {
        // not started, or already gone
      }
    }
    await new Promise((r) => setTimeout(r, 200));
    for (const d of dnsmasqDirs) rmSync(d, { recursive: true, force: true });
  });

  /** The node netns: master eth0 is one end of a veth whose peer carries dnsmasq. */
  const nodeSetup = (third: number) => {
    const d = freshDir('dnsmasq');
    dnsmasqDirs.push(d);
    return [
      'ip link add eth0 type veth peer name dhs1',
      'ip link set eth0 up',
      'ip link set dhs1 up',
      `ip addr add 192.168.${third}.1/24 dev dhs1`,
      [
        '/usr/sbin/dnsmasq --conf-file=/dev/null --no-resolv --no-hosts --port=0 --no-ping',
        '--user=root --group=root --interface=dhs1 --bind-interfaces',
        `--pid-file=${d}/pid --dhcp-leasefile=${d}/leases --log-facility=${d}/log`,
        `--dhcp-range=192.168.${third}.10,192.168.${third}.200,255.255.255.0,2m`,
        `--dhcp-option=option:router,192.168.${third}.1`,
      ].join(' '),
    ].join(' && ');
  };

  // Go 1.1.1 speaks up to 1.0.0.
  for (const [who, plugin, third, versions] of [
    ['ours', ours('macvlan'), 83, ['0.4.0', '1.1.0']],
    ['Go 1.1.1', join(GO, 'macvlan'), 84, ['0.4.0', '1.0.0']],
  ] as const) {
    it(`${who} macvlan with our dhcp`, async (ctx) => {
      need(ctx, plugin, '/usr/sbin/dnsmasq', join(BIN_DIR, 'dhcp'));
      if (!daemon) return;
      const config = {
        type: 'macvlan',
        master: 'eth0',
        mode: 'bridge',
        ipam: { type: 'dhcp', daemonSocketPath: daemon.socketPath },
      };
      const r = await conform(plugin, config, {
        versions,
        nodeSetup: nodeSetup(third),
        cniPath: [BIN_DIR],
        concurrency: 3,
      });
      expectAllPass(r, [...versions]);
      expect(passedIds(r)).toEqual(expect.arrayContaining([`check@${versions[1]}`]));
      // Every lease was released again.
      expect(daemon.leases()).toEqual([]);
    }, 180_000);
  }
});
