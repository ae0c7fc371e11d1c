// A DHCP lab of the test's own: a server netns running Debian's dnsmasq on one end of a veth pair,
// a node netns with the other end (the macvlan master), and container netns. Nothing touches the
// machine's own interfaces or /etc; `close()` kills what it started and deletes the namespaces and
// files, also after a failure.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One line of dnsmasq's lease file. */
export interface DnsmasqLease {
  expiry: number;
  mac: string;
  ip: string;
  hostname: string;
  clientId: string;
}

/** What the lab's dnsmasq serves. */
export interface DnsmasqOptions {
  /** Lease time as dnsmasq reads it (at least 2m). */
  leaseTime?: string;
  /** Extra --dhcp-option values (e.g. "121,10.9.0.0/16,192.168.77.1"). */
  options?: string[];
  /** Extra command-line arguments. */
  args?: string[];
}

export interface DhcpLab {
  readonly tag: string;
  readonly dir: string;
  /** The server netns name (dnsmasq on s0). */
  readonly srv: string;
  /** The node netns name (where the macvlan master n0 lives) and its path. */
  readonly node: string;
  readonly nodePath: string;
  /** The server's address and the subnet's first three octets. */
  readonly serverIp: string;
  readonly net: string;
  startDnsmasq(opts?: DnsmasqOptions): void;
  /** dnsmasq's lease file, parsed. */
  leases(): DnsmasqLease[];
  /** dnsmasq's log so far (for failure messages). */
  log(): string;
  /** A fresh container netns; returns its path. */
  container(suffix: string): string;
  /** A macvlan on n0 moved into the container netns as `ifname` (for calling the IPAM plugin alone). */
  macvlanIn(netnsPath: string, ifname: string): string;
  close(): Promise<void>;
}

export const hasDnsmasq = (): boolean => existsSync('/usr/sbin/dnsmasq');

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
const nsOf = (p: string) => p.split('/').pop() ?? '';

/** Builds the lab: server netns + node netns joined by a veth pair. */
export function dhcpLab(prefix: string, third = 77): DhcpLab {
  const tag = `${prefix}${process.pid % 100000}`;
  const dir = mkdtempSync(join(tmpdir(), `${tag}-`));
  const netnses: string[] = [];
  const newNs = (name: string) => {
    spawnSync('ip', ['netns', 'del', name]);
    ip('netns', 'add', name);
    netnses.push(name);
    return name;
  };
  let dnsmasq: ChildProcess | undefined;
  let logText = '';
  const net = `192.168.${third}`;
  const srv = newNs(`${tag}-srv`);
  const node = newNs(`${tag}-node`);
  const lab: DhcpLab = {
    tag,
    dir,
    srv,
    node,
    nodePath: `/var/run/netns/${node}`,
    serverIp: `${net}.1`,
    net,
    startDnsmasq(opts = {}) {
      const args = [
        'netns',
        'exec',
        srv,
        '/usr/sbin/dnsmasq',
        '--keep-in-foreground',
        '--conf-file=/dev/null',
        '--no-resolv',
        '--no-hosts',
        '--port=0',
        // dnsmasq pings an address before offering it (up to 3 s); nothing else uses these subnets.
        '--no-ping',
        '--user=root',
        '--group=root',
        '--interface=s0',
        '--bind-interfaces',
        '--log-dhcp',
        '--log-facility=-',
        `--pid-file=${join(dir, 'dnsmasq.pid')}`,
        `--dhcp-leasefile=${join(dir, 'leases')}`,
        `--dhcp-range=${net}.10,${net}.60,255.255.255.0,${opts.leaseTime ?? '2m'}`,
        `--dhcp-option=option:router,${net}.1`,
        ...(opts.options ?? []).map((o) => `--dhcp-option=${o}`),
        ...(opts.args ?? []),
      ];
      dnsmasq = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      dnsmasq.stdout?.on('data', (c: Buffer) => {
        logText += c.toString();
      });
      dnsmasq.stderr?.on('data', (c: Buffer) => {
        logText += c.toString();
      });
      // dnsmasq binds at once; wait until its pid file exists so the first DISCOVER is heard.
      const until = Date.now() + 5000;
      while (!existsSync(join(dir, 'dnsmasq.pid')) && Date.now() < until) spawnSync('sleep', ['0.05']);
    },
    leases() {
      const file = join(dir, 'leases');
      if (!existsSync(file)) return [];
      return readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.trim() && !l.startsWith('duid'))
        .map((l) => {
          const [expiry, mac, addr, hostname, clientId] = l.split(' ');
          return {
            expiry: Number(expiry),
            mac: mac ?? '',
            ip: addr ?? '',
            hostname: hostname ?? '*',
            clientId: clientId ?? '*',
          };
        });
    },
    log: () => logText,
    container(suffix) {
      return `/var/run/netns/${newNs(`${tag}-${suffix}`)}`;
    },
    macvlanIn(netnsPath, ifname) {
      const tmp = `${tag.slice(0, 8)}m${Math.random().toString(36).slice(2, 6)}`;
      ip('-n', node, 'link', 'add', tmp, 'link', 'n0', 'type', 'macvlan', 'mode', 'bridge');
      ip('-n', node, 'link', 'set', tmp, 'netns', nsOf(netnsPath));
      ip('-n', nsOf(netnsPath), 'link', 'set', tmp, 'name', ifname);
      return ifname;
    },
    async close() {
      const d = dnsmasq;
      if (d?.pid !== undefined && d.exitCode === null && d.signalCode === null) {
        // ip netns exec execs dnsmasq in place: this pid is dnsmasq itself.
        const exited = new Promise((resolve) => d.once('exit', resolve));
        d.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (d.exitCode === null && d.signalCode === null) d.kill('SIGKILL');
      }
      for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    ip('-n', srv, 'link', 'add', 's0', 'type', 'veth', 'peer', 'name', 'n0', 'netns', node);
    ip('-n', srv, 'addr', 'add', `${net}.1/24`, 'dev', 's0');
    ip('-n', srv, 'link', 'set', 's0', 'up');
    ip('-n', srv, 'link', 'set', 'lo', 'up');
    ip('-n', node, 'link', 'set', 'n0', 'up');
  } catch (e) {
    void lab.close();
    throw e;
  }
  return lab;
}
