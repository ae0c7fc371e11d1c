// A small world for the portmap suites, all in namespaces of the test's own: a node netns (the
// "host": bridge, iptables/nft state, plugins run there with `ip netns exec`), a client netns
// wired to the node over a veth (192.0.2.0/24, 2001:db8:1::/64), container netns, and an echo
// server in a container that answers TCP and UDP with "ok <peer address>".
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { untilStdout } from './plugin.js';

/** The node's address on the client link, per family, and the client's. */
export const NODE_IP = { 4: '192.0.2.1', 6: '2001:db8:1::1' } as const;
export const CLIENT_IP = { 4: '192.0.2.2', 6: '2001:db8:1::2' } as const;

/** Why the world cannot be built here, if it cannot. */
export function worldMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return 'iproute2 with netns support not installed';
  return undefined;
}

const sh = (cmd: string, args: string[]) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

/** Runs `cmd` inside the netns `ns` and returns stdout (throws on failure). */
export const inNs = (ns: string, cmd: string, ...args: string[]): string =>
  sh('ip', ['netns', 'exec', ns, cmd, ...args]);

const SERVER = `
const net = require('net'), dgram = require('dgram');
const peer = (a) => a.replace(/^::ffff:/, '');
const [tcpPort, udpPort] = process.argv.slice(1).map(Number);
net.createServer((s) => s.end('ok ' + peer(s.remoteAddress))).listen(tcpPort, '::', () => {
  const u = dgram.createSocket({ type: 'udp6' });
  u.on('message', (m, r) => u.send('ok ' + peer(r.address), r.port, r.address));
  u.bind(udpPort, '::', () => console.log('ready'));
});`;

const CLIENT = `
const [proto, host, port, from] = process.argv.slice(1);
setTimeout(() => { console.log('timeout'); process.exit(2); }, 1500);
if (proto === 'tcp') {
  let d = '';
  const s = require('net').connect({ host, port: +port });
  s.on('data', (b) => (d += b));
  s.on('end', () => { console.log(d); process.exit(0); });
  s.on('error', (e) => { console.log('error ' + e.code); process.exit(1); });
} else {
  const u = require('dgram').createSocket(host.includes(':') ? 'udp6' : 'udp4');
  u.on('message', (m) => { console.log(String(m)); process.exit(0); });
  u.bind(from ? +from : 0, () => u.send('hi', +port, host));
}`;

/** One world; `close()` removes every namespace, process and file it made. */
export class PortmapWorld {
  readonly node: string;
  readonly client: string;
  readonly work: string;
  private readonly netnses: string[] = [];
  private readonly servers: ChildProcess[] = [];

  constructor(readonly tag: string) {
    this.work = mkdtempSync(join(tmpdir(), `${tag}-`));
    this.node = this.netns('node');
    this.client = this.netns('cl');
    const n = this.node;
    inNs(n, 'ip', 'link', 'set', 'lo', 'up');
    inNs(n, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1');
    sh('ip', ['-n', n, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.client]);
    for (const [ns, ips] of [
      [n, NODE_IP],
      [this.client, CLIENT_IP],
    ] as const) {
      const dev = ns === n ? 'up0' : 'eth0';
      sh('ip', ['-n', ns, 'addr', 'add', `${ips[4]}/24`, 'dev', dev]);
      sh('ip', ['-n', ns, 'addr', 'add', `${ips[6]}/64`, 'dev', dev, 'nodad']);
      sh('ip', ['-n', ns, 'link', 'set', dev, 'up']);
      sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    sh('ip', ['-n', this.client, 'route', 'add', 'default', 'via', NODE_IP[4]]);
    sh('ip', ['-n', this.client, '-6', 'route', 'add', 'default', 'via', NODE_IP[6]]);
  }

  /** A fresh netns named `<tag>-<suffix>`; returns its name. */
  netns(suffix: string): string {
    const name = `${this.tag}-${suffix}`;
    spawnSync('ip', ['netns', 'del', name]);
    sh('ip', ['netns', 'add', name]);
    this.netnses.push(name);
    return name;
  }

  /** Starts the echo server in netns `ns` (TCP on `tcp`, UDP on `udp`) and waits until it listens. */
  async server(ns: string, tcp: number, udp: number): Promise<void> {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER, String(tcp), String(udp)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.servers.push(p);
    await untilStdout(p, 'ready', 'echo server');
  }

  /** One request from netns `ns` (UDP: from source port `from`): the answer, "timeout" or "error <code>". */
  ask(ns: string, proto: 'tcp' | 'udp', host: string, port: number, from?: number): string {
    const args = [proto, host, String(port), ...(from ? [String(from)] : [])];
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', CLIENT, ...args], {
      encoding: 'utf8',
    });
    return r.stdout.trim();
  }

  /**
   * Asks until the answer is "ok ...", for up to `withinMs` (default 15 s; each ask waits 1.5 s
   * for its answer). The first requests after an ADD can go unanswered while ARP/ND resolves, IPv6
   * DAD runs on the bridge or the container, or a bridge port's carrier event is still queued in the
   * kernel. UDP asks keep one source port (`from`) when given. Returns the "ok" answer, or the last
   * one followed by every answer seen, so a failing assertion says what happened.
   */
  askUntil(
    ns: string,
    proto: 'tcp' | 'udp',
    host: string,
    port: number,
    opts: { from?: number; withinMs?: number } = {},
  ): string {
    const start = performance.now();
    const seen: string[] = [];
    for (;;) {
      const a = this.ask(ns, proto, host, port, opts.from);
      if (a.startsWith('ok')) return a;
      seen.push(a || '(no output)');
      const ms = Math.round(performance.now() - start);
      if (ms >= (opts.withinMs ?? 15_000))
        return `${a} (${seen.length} asks in ${ms} ms from ${ns} to ${host}:${port}/${proto}: ${seen.join(', ')})`;
    }
  }

  /** The node's nat tables (iptables-save v4 and v6) and nft ruleset, as one text. */
  firewall(): string {
    const out = [
      inNs(this.node, 'iptables-save', '-t', 'nat'),
      inNs(this.node, 'ip6tables-save', '-t', 'nat'),
    ];
    const nft = spawnSync('ip', ['netns', 'exec', this.node, 'nft', 'list', 'ruleset'], { encoding: 'utf8' });
    if (nft.status === 0) out.push(nft.stdout);
    return out.join('\n');
  }

  close(): void {
    for (const s of this.servers) if (s.exitCode === null && s.pid) process.kill(s.pid, 'SIGKILL');
    for (const n of this.netnses.reverse()) spawnSync('ip', ['netns', 'del', n]);
    rmSync(this.work, { recursive: true, force: true });
  }
}

/** Execs a plugin binary inside the node netns, as a runtime on that node would. */
export function execInNode(
  node: string,
  bin: string,
  env: Record<string, string>,
  stdin: object,
): { status: number | null; stdout: string; stderr: string; json: Record<string, unknown> | undefined } {
  const r = spawnSync('ip', ['netns', 'exec', node, bin], {
    env: { PATH: process.env.PATH ?? '', ...env },
    input: JSON.stringify(stdin),
    encoding: 'utf8',
  });
  let json: Record<string, unknown> | undefined;
  try {
    json = r.stdout ? (JSON.parse(r.stdout) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, json };
}
