// The dhcp IPAM plugin and `cni-kit dhcp-daemon` against a real DHCP server: Debian's dnsmasq in a
// server netns of the test's own, a node netns with the macvlan master, containers getting a
// macvlan. The plugins run as a runtime on the node runs them (exec or daemon mode, see
// test/helpers/mode.ts). Everything runs in namespaces created here; the daemon and dnsmasq are
// stopped and every namespace and file removed at the end, also on failure. One file past ~400
// lines on purpose: the tests share one lab (dnsmasq and the daemon) that takes seconds to set up.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getDhcpDaemon } from 'cni-kit/ipam';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { type DhcpLab, dhcpLab, hasDnsmasq } from '../helpers/dnsmasq.js';
import { pluginDir } from '../helpers/mode.js';
import { BIN_DIR, execPlugin } from '../helpers/plugin.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const usable = process.getuid?.() === 0 && hasDnsmasq() && existsSync(join(BIN_DIR, 'dhcp'));
const ipj = <T>(...args: string[]): T =>
  JSON.parse(execFileSync('ip', ['-j', ...args], { encoding: 'utf8' })) as T;
const nsName = (p: string) => p.split('/').pop() ?? '';

function need(ctx: TestContext): void {
  if (!usable)
    ctx.skip(
      'needs root, dnsmasq (apt-get install dnsmasq-base) and dist/bin/dhcp (node scripts/build-bins.mjs)',
    );
}

/** `cni-kit dhcp-daemon` as a process: the built CLI when present, else the source through tsx. */
class DaemonProc {
  proc: ChildProcess | undefined;
  out = '';
  constructor(
    readonly socket: string,
    readonly pidfile: string,
  ) {}

  async start(extra: string[] = []): Promise<void> {
    const cli = join(root, 'dist/cli.cjs');
    const args = [
      ...(process.env.CNI_KIT_BUILT && existsSync(cli)
        ? [cli]
        : ['--import', 'tsx', join(root, 'src/cli/bin.ts')]),
      'dhcp-daemon',
      '--socket-path',
      this.socket,
      '--pidfile',
      this.pidfile,
      '--timeout',
      '3s',
      '--resend-timeout',
      '20s',
      ...extra,
    ];
    const p = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: root });
    this.proc = p;
    p.stdout?.on('data', (c: Buffer) => {
      this.out += c.toString();
    });
    p.stderr?.on('data', (c: Buffer) => {
      this.out += c.toString();
    });
    const until = Date.now() + 15_000;
    while (!this.out.includes('dhcp daemon listening')) {
      if (p.exitCode !== null || Date.now() > until)
        throw new Error(`dhcp-daemon did not start: ${this.out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<number | null> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => p.once('exit', (code) => resolve(code)));
    p.kill('SIGTERM');
    const code = await Promise.race([
      exited,
      // A loaded machine can take seconds to schedule a Node process's exit path.
      new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 20_000)),
    ]);
    if (code === 'timeout') {
      p.kill('SIGKILL');
      return -1;
    }
    return code;
  }
}

interface LeaseRow {
  key: string;
  address: string;
  state: string;
  renewals: number;
  rebinds: number;
}

async function leasesOf(socket: string): Promise<LeaseRow[]> {
  const r = await getDhcpDaemon(socket, '/v1/leases');
  if (r.status !== 200) throw new Error(`GET /v1/leases: ${r.status} ${r.body}`);
  return JSON.parse(r.body) as LeaseRow[];
}

describe.runIf(process.platform === 'linux')('dhcp against dnsmasq', () => {
  let lab: DhcpLab | undefined;
  let daemon: DaemonProc | undefined;
  /** Where a runtime on the node finds our plugins: dist/bin, or shims to a node daemon (daemon mode). */
  let bins = BIN_DIR;
  const env = (cmd: string, netns: string, cid: string, extra: Record<string, string> = {}) => ({
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: cid,
    CNI_NETNS: netns,
    CNI_IFNAME: 'eth0',
    CNI_PATH: bins,
    ...extra,
  });

  beforeAll(async () => {
    if (!usable) return;
    lab = dhcpLab('dh');
    bins = pluginDir(lab.nodePath);
    lab.startDnsmasq({
      options: ['121,10.99.0.0/16,192.168.77.1,0.0.0.0/0,192.168.77.1', 'option:T1,4s', 'option:T2,9s'],
    });
    daemon = new DaemonProc(join(lab.dir, 'run', 'dhcp.sock'), join(lab.dir, 'dhcp.pid'));
    await daemon.start();
  }, 30_000);

  afterAll(async () => {
    const code = await daemon?.stop();
    await lab?.close();
    if (daemon) {
      expect(code, daemon.out).toBe(0);
      expect(existsSync(daemon.socket)).toBe(false);
      expect(existsSync(daemon.pidfile)).toBe(false);
    }
  }, 30_000);

  const conf = (extra: Record<string, unknown> = {}) => ({
    cniVersion: '1.0.0',
    name: 'dhnet',
    type: 'macvlan',
    ipam: { type: 'dhcp', daemonSocketPath: daemon?.socket, ...extra },
  });

  it('ADD leases an address from dnsmasq on the container interface; DEL releases it', async (ctx) => {
    need(ctx);
    if (!lab || !daemon) return;
    const ns = lab.container('c1');
    lab.macvlanIn(ns, 'eth0');
    const cfg = conf({
      provide: [{ option: 'host-name', fromArg: 'K8S_POD_NAME' }],
      request: [{ option: '121' }],
    });
    const add = execPlugin(
      `${bins}dhcp`,
      env('ADD', ns, 'ctr-a', { CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=pod-a' }),
      JSON.stringify(cfg),
    );
    expect(add.status, add.stdout + add.stderr + daemon.out + lab.log()).toBe(0);
    const r = add.json as {
      ips: Array<{ address: string; gateway?: string }>;
      routes: Array<{ dst: string; gw?: string }>;
    };
    const addr = r.ips[0]?.address ?? '';
    expect(addr).toMatch(/^192\.168\.77\.\d+\/24$/);
    const leased = lab.leases().find((l) => `${l.ip}/24` === addr);
    expect(leased, JSON.stringify(lab.leases())).toBeDefined();
    const link = ipj<Array<{ address: string }>>('-n', nsName(ns), 'link', 'show', 'eth0')[0];
    expect(leased?.mac).toBe(link?.address);
    expect(leased?.hostname).toBe('pod-a');
    expect(r.ips[0]?.gateway).toBe('192.168.77.1');
    // Option 121 wins over the router (RFC 3442), as the reference reads it.
    expect(r.routes).toEqual([
      { dst: '10.99.0.0/16', gw: '192.168.77.1' },
      { dst: '0.0.0.0/0', gw: '192.168.77.1' },
    ]);
    // ADD again (a retried call) returns the same lease.
    const again = execPlugin(
      `${bins}dhcp`,
      env('ADD', ns, 'ctr-a', { CNI_ARGS: 'K8S_POD_NAME=pod-a' }),
      JSON.stringify(cfg),
    );
    expect((again.json as { ips: Array<{ address: string }> }).ips[0]?.address).toBe(addr);
    const check = execPlugin(
      `${bins}dhcp`,
      env('CHECK', ns, 'ctr-a'),
      JSON.stringify({ ...cfg, prevResult: add.json }),
    );
    expect(check.status, check.stdout).toBe(0);
    const del = execPlugin(`${bins}dhcp`, env('DEL', ns, 'ctr-a'), JSON.stringify(cfg));
    expect(del.status, del.stdout + del.stderr).toBe(0);
    await expect
      .poll(() => lab?.leases().some((l) => `${l.ip}/24` === addr), { timeout: 15_000 })
      .toBe(false);
    expect(execPlugin(`${bins}dhcp`, env('DEL', ns, 'ctr-a'), JSON.stringify(cfg)).status).toBe(0);
    const probe = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        join(root, 'src/cli/bin.ts'),
        'dhcp-daemon',
        '--probe',
        '--socket-path',
        daemon.socket,
      ],
      { encoding: 'utf8', cwd: root },
    );
    expect(probe.status, probe.stdout + probe.stderr).toBe(0);
    const gone = execPlugin(
      `${bins}dhcp`,
      env('CHECK', ns, 'ctr-a'),
      JSON.stringify({ ...cfg, prevResult: add.json }),
    );
    expect(gone.status).not.toBe(0);
    expect((gone.json as { code: number }).code).toBe(3);
  }, 60_000);

  it('renews at T1 (dnsmasq sends T1 = 4 s): the lease file expiry moves on', async (ctx) => {
    need(ctx);
    if (!lab || !daemon) return;
    const ns = lab.container('c2');
    lab.macvlanIn(ns, 'eth0');
    const cfg = conf();
    const add = execPlugin(`${bins}dhcp`, env('ADD', ns, 'ctr-r'), JSON.stringify(cfg));
    expect(add.status, add.stdout + daemon.out).toBe(0);
    const addr = (add.json as { ips: Array<{ address: string }> }).ips[0]?.address.split('/')[0] ?? '';
    // The plugin's caller (macvlan) puts the address on the interface; renewals come from it.
    execFileSync('ip', ['-n', nsName(ns), 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
    const first = lab.leases().find((l) => l.ip === addr)?.expiry ?? 0;
    expect(first).toBeGreaterThan(0);
    await expect
      .poll(
        async () => (await leasesOf(daemon?.socket ?? '')).find((l) => l.address === addr)?.renewals ?? 0,
        {
          timeout: 15_000,
          interval: 500,
        },
      )
      .toBeGreaterThan(0);
    await expect
      .poll(() => lab?.leases().find((l) => l.ip === addr)?.expiry ?? 0, { timeout: 15_000 })
      .toBeGreaterThan(first);
    expect(lab.log()).toMatch(new RegExp(`DHCPACK\\(s0\\) ${addr.replace(/\./g, '\\.')}`));
    expect(execPlugin(`${bins}dhcp`, env('DEL', ns, 'ctr-r'), JSON.stringify(cfg)).status).toBe(0);
  }, 60_000);

  it('rebinds by broadcast at T2 (9 s) when unicast renewals are dropped on the way to dnsmasq', async (ctx) => {
    need(ctx);
    if (!lab || !daemon) return;
    const ns = lab.container('c3');
    lab.macvlanIn(ns, 'eth0');
    const cfg = conf();
    const add = execPlugin(`${bins}dhcp`, env('ADD', ns, 'ctr-rb'), JSON.stringify(cfg));
    expect(add.status, add.stdout + daemon.out).toBe(0);
    const addr = (add.json as { ips: Array<{ address: string }> }).ips[0]?.address.split('/')[0] ?? '';
    execFileSync('ip', ['-n', nsName(ns), 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
    // The server netns is the test's own: its iptables are private to it.
    const rule = ['-p', 'udp', '--dport', '67', '-d', lab.serverIp, '-j', 'DROP'];
    const iptables = (op: string) =>
      execFileSync('ip', ['netns', 'exec', lab?.srv ?? '', 'iptables', op, 'INPUT', ...rule]);
    iptables('-I');
    try {
      await expect
        .poll(
          async () => (await leasesOf(daemon?.socket ?? '')).find((l) => l.address === addr)?.rebinds ?? 0,
          // T2 is 9 s; the renewal tried before it waits out its 3 s --timeout: about 12.5 s here.
          {
            timeout: 30_000,
            interval: 500,
          },
        )
        .toBeGreaterThan(0);
      const l = (await leasesOf(daemon.socket)).find((x) => x.address === addr);
      expect(l?.renewals).toBe(0);
      expect(l?.state).toBe('bound');
      expect(lab.log()).toMatch(new RegExp(`DHCPREQUEST\\(s0\\) ${addr.replace(/\./g, '\\.')}`));
    } finally {
      iptables('-D');
    }
    expect(execPlugin(`${bins}dhcp`, env('DEL', ns, 'ctr-rb'), JSON.stringify(cfg)).status).toBe(0);
    await expect.poll(() => lab?.leases().some((x) => x.ip === addr), { timeout: 15_000 }).toBe(false);
  }, 60_000);

  it('our macvlan with the dhcp IPAM, and the Go macvlan with it (chained under the node netns)', async (ctx) => {
    need(ctx);
    if (!lab || !daemon) return;
    for (const [which, bin] of [
      ['ours', `${bins}macvlan`],
      ['go', '/usr/lib/cni/macvlan'],
    ] as const) {
      if (!existsSync(bin)) continue;
      const ns = lab.container(`mv${which}`);
      const cfg = { ...conf(), master: 'n0' };
      const run = (cmd: string) =>
        spawnSync('ip', ['netns', 'exec', lab?.node ?? '', bin], {
          env: { PATH: process.env.PATH ?? '', ...env(cmd, ns, `ctr-${which}`) },
          input: JSON.stringify(cfg),
          encoding: 'utf8',
        });
      const add = run('ADD');
      expect(add.status, `${which}: ${add.stdout}${add.stderr}${daemon.out}`).toBe(0);
      const r = JSON.parse(add.stdout) as { ips: Array<{ address: string }> };
      const addr = r.ips[0]?.address ?? '';
      const shown = ipj<Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>>(
        '-n',
        nsName(ns),
        'addr',
        'show',
        'eth0',
      )[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`);
      expect(shown, which).toContain(addr);
      const routes = execFileSync('ip', ['-n', nsName(ns), 'route'], { encoding: 'utf8' });
      expect(routes, which).toContain('default via 192.168.77.1 dev eth0');
      expect(
        lab.leases().some((l) => `${l.ip}/24` === addr),
        which,
      ).toBe(true);
      const del = run('DEL');
      expect(del.status, `${which}: ${del.stdout}${del.stderr}`).toBe(0);
      await expect
        .poll(() => lab?.leases().some((l) => `${l.ip}/24` === addr), { timeout: 15_000 })
        .toBe(false);
    }
  }, 60_000);

  it('chains under libcni (cni-kit exec) both ways: ours + Go tuning, Go macvlan + our dhcp + our tuning', async (ctx) => {
    need(ctx);
    if (!lab || !daemon) return;
    if (!existsSync('/usr/lib/cni/macvlan') || !existsSync('/usr/lib/cni/tuning')) ctx.skip('no Go plugins');
    const cli =
      process.env.CNI_KIT_BUILT && existsSync(join(root, 'dist/cli.cjs'))
        ? [join(root, 'dist/cli.cjs')]
        : ['--import', 'tsx', join(root, 'src/cli/bin.ts')];
    for (const [which, macvlan, tuning] of [
      ['ours-then-go', `${bins}macvlan`, '/usr/lib/cni/tuning'],
      ['go-then-ours', '/usr/lib/cni/macvlan', `${bins}tuning`],
    ] as const) {
      const bin = join(lab.dir, `bin-${which}`);
      mkdirSync(bin);
      symlinkSync(macvlan, join(bin, 'macvlan'));
      symlinkSync(tuning, join(bin, 'tuning'));
      symlinkSync(`${bins}dhcp`, join(bin, 'dhcp'));
      const list = join(lab.dir, `${which}.conflist`);
      writeFileSync(
        list,
        JSON.stringify({
          cniVersion: '1.0.0',
          name: `dh-${which}`,
          plugins: [
            { type: 'macvlan', master: 'n0', ipam: { type: 'dhcp', daemonSocketPath: daemon.socket } },
            { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.arp_notify': '1' } },
          ],
        }),
      );
      const ns = lab.container(which);
      const run = (cmd: string) =>
        spawnSync(
          'ip',
          [
            'netns',
            'exec',
            lab?.node ?? '',
            process.execPath,
            ...cli,
            'exec',
            cmd,
            list,
            '--netns',
            ns,
            '--id',
            `ctr-${which}`,
            '--path',
            `${bin}:${bins}`,
            '--cache',
            join(lab?.dir ?? '', `cache-${which}`),
          ],
          { encoding: 'utf8', cwd: root },
        );
      const add = run('add');
      expect(add.status, `${which}: ${add.stdout}${add.stderr}`).toBe(0);
      const addr = (JSON.parse(add.stdout) as { ips: Array<{ address: string }> }).ips[0]?.address ?? '';
      expect(
        lab.leases().some((l) => `${l.ip}/24` === addr),
        which,
      ).toBe(true);
      const check = run('check');
      expect(check.status, `${which}: ${check.stdout}${check.stderr}`).toBe(0);
      const del = run('del');
      expect(del.status, `${which}: ${del.stdout}${del.stderr}`).toBe(0);
      await expect
        .poll(() => lab?.leases().some((l) => `${l.ip}/24` === addr), { timeout: 15_000 })
        .toBe(false);
    }
  }, 90_000);

  it('a netns that disappears drops its lease; the daemon carries on and DEL succeeds', async (ctx) => {
    need(ctx);
    if (!lab || !daemon) return;
    const ns = lab.container('gone');
    lab.macvlanIn(ns, 'eth0');
    const cfg = conf();
    const add = execPlugin(`${bins}dhcp`, env('ADD', ns, 'ctr-g'), JSON.stringify(cfg));
    expect(add.status, add.stdout + daemon.out).toBe(0);
    const addr = (add.json as { ips: Array<{ address: string }> }).ips[0]?.address.split('/')[0] ?? '';
    execFileSync('ip', ['netns', 'del', nsName(ns)]);
    // The upkeep wakes at T1 (4 s), finds no netns and drops the lease.
    await expect
      .poll(async () => (await leasesOf(daemon?.socket ?? '')).some((l) => l.address === addr), {
        timeout: 15_000,
        interval: 500,
      })
      .toBe(false);
    expect(daemon.out).toContain('lease dropped');
    expect(daemon.proc?.exitCode).toBeNull();
    const del = execPlugin(`${bins}dhcp`, env('DEL', ns, 'ctr-g'), JSON.stringify(cfg));
    expect(del.status, del.stdout).toBe(0);
    // And it still serves: a new container gets a lease.
    const ns2 = lab.container('after');
    lab.macvlanIn(ns2, 'eth0');
    const add2 = execPlugin(`${bins}dhcp`, env('ADD', ns2, 'ctr-g2'), JSON.stringify(cfg));
    expect(add2.status, add2.stdout).toBe(0);
    expect(execPlugin(`${bins}dhcp`, env('DEL', ns2, 'ctr-g2'), JSON.stringify(cfg)).status).toBe(0);
  }, 60_000);

  it('ADD into a netns without the interface fails with code 8, naming it, and leaves no lease', async (ctx) => {
    need(ctx);
    if (!lab || !daemon) return;
    const ns = lab.container('noif');
    const add = execPlugin(`${bins}dhcp`, env('ADD', ns, 'ctr-n'), JSON.stringify(conf()));
    expect(add.status).not.toBe(0);
    expect(add.json).toMatchObject({ code: 8 });
    expect((add.json as { msg: string }).msg).toContain('eth0');
    expect((await leasesOf(daemon.socket)).some((l) => l.key.startsWith('ctr-n/'))).toBe(false);
  });

  it('bad options are code 7 naming the field, before the daemon is asked', (ctx) => {
    need(ctx);
    const bad = conf({ provide: [{ option: 'no-such-option', value: 'x' }] });
    const add = execPlugin(`${bins}dhcp`, env('ADD', '/var/run/netns/none', 'ctr-b'), JSON.stringify(bad));
    expect(add.status).not.toBe(0);
    expect(add.json).toMatchObject({ code: 7 });
    expect((add.json as { msg: string }).msg).toContain('ipam.provide[0].option');
    expect(add.stdout + add.stderr).not.toMatch(/\n\s+at /);
  });
});

describe.runIf(process.platform === 'linux')('dhcp without our daemon', () => {
  const env = (cmd: string) => ({
    CNI_COMMAND: cmd,
    CNI_CONTAINERID: 'ctr-x',
    CNI_NETNS: '/var/run/netns/none',
    CNI_IFNAME: 'eth0',
    CNI_PATH: pluginDir(),
  });
  let dir = '';
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dhcp-nod-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const conf = (socket: string) => ({
    cniVersion: '1.1.0',
    name: 'x',
    type: 'macvlan',
    ipam: { type: 'dhcp', daemonSocketPath: socket },
  });

  it('no daemon: ADD is code 11 naming the socket and how to start it; DEL succeeds; STATUS is 50', (ctx) => {
    if (!existsSync(join(BIN_DIR, 'dhcp'))) ctx.skip('dist/bin/dhcp is not built');
    const socket = join(dir, 'none.sock');
    const add = execPlugin(`${pluginDir()}dhcp`, env('ADD'), JSON.stringify(conf(socket)));
    expect(add.status).not.toBe(0);
    expect(add.json).toMatchObject({ code: 11 });
    const e = add.json as { msg: string; details: string };
    expect(e.msg).toContain(socket);
    expect(e.details).toContain('cni-kit dhcp-daemon');
    expect(execPlugin(`${pluginDir()}dhcp`, env('DEL'), JSON.stringify(conf(socket))).status).toBe(0);
    const st = execPlugin(`${pluginDir()}dhcp`, env('STATUS'), JSON.stringify(conf(socket)));
    expect(st.json).toMatchObject({ code: 50 });
  });

  it('cni-kit dhcp-daemon: usage errors exit 2 naming the flag; --probe without a daemon exits 1', () => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/bin.ts'), 'dhcp-daemon', ...args], {
        encoding: 'utf8',
        cwd: root,
      });
    const bad = cli('--timeout', '10');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--timeout: "10" is not a duration; use e.g. 10s, 1m2s or 500ms');
    const rel = cli('--pidfile', 'dhcp.pid', '--socket-path', join(dir, 'x.sock'));
    expect(rel.status).toBe(2);
    expect(rel.stderr).toContain('--pidfile: "dhcp.pid" is not an absolute path');
    const probe = cli('--probe', '--socket-path', join(dir, 'none.sock'));
    expect(probe.status).toBe(1);
    expect(probe.stdout).toContain('no cni-kit dhcp daemon answers');
    // Three CLI starts through tsx: seconds each on a loaded machine.
  }, 90_000);

  it('the Go daemon on the socket: the error says so', async (ctx) => {
    if (!existsSync(join(BIN_DIR, 'dhcp')) || !existsSync('/usr/lib/cni/dhcp') || process.getuid?.() !== 0)
      ctx.skip('needs root, dist/bin/dhcp and the Go dhcp in /usr/lib/cni');
    const socket = join(dir, 'go.sock');
    const go = spawn('/usr/lib/cni/dhcp', ['daemon', '-socketpath', socket], { stdio: 'ignore' });
    try {
      await expect.poll(() => existsSync(socket), { timeout: 20_000 }).toBe(true);
      const add = execPlugin(`${pluginDir()}dhcp`, env('ADD'), JSON.stringify(conf(socket)));
      expect(add.status).not.toBe(0);
      expect((add.json as { msg: string }).msg).toContain('Go dhcp daemon');
      const st = execPlugin(`${pluginDir()}dhcp`, env('STATUS'), JSON.stringify(conf(socket)));
      expect((st.json as { msg: string }).msg).toContain('Go dhcp daemon');
    } finally {
      const exited = new Promise((r) => go.once('exit', r));
      go.kill('SIGTERM');
      await exited;
      rmSync(socket, { force: true });
    }
  });
});
