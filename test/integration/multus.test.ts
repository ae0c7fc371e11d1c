// multus in delegates mode, in real network namespaces, with the Go reference plugins as delegates:
// the Go bridge + host-local as the cluster network (eth0), the Go macvlan as an attachment (net1).
// Over the 400-line guideline on purpose: the scenarios share one work dir and macvlan master.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPlugin } from 'cni-kit';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { multusPlugin } from '../../examples/multus/plugin.js';
import { pluginDir } from '../helpers/mode.js';
import { BIN_DIR } from '../helpers/plugin.js';

const GO = '/usr/lib/cni';
const tag = `mlt${process.pid % 100000}`;
const o2 = 100 + (process.pid % 100);
const bridge = `${tag}br`;
const master = `${tag}m0`;
let work = '';
const netnses: string[] = [];

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root for network namespaces';
  for (const p of ['bridge', 'host-local', 'macvlan'])
    if (!existsSync(join(GO, p))) return `Go plugin ${p} missing in ${GO}`;
  return undefined;
}
const need = (ctx: TestContext) => {
  const why = missing();
  if (why) ctx.skip(why);
};

function netns(suffix: string): string {
  const name = `${tag}-${suffix}`;
  spawnSync('ip', ['netns', 'del', name]);
  execFileSync('ip', ['netns', 'add', name]);
  netnses.push(name);
  return `/var/run/netns/${name}`;
}

function inNs(path: string, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', path.split('/').pop() as string, 'ip', ...args], {
    encoding: 'utf8',
  });
}

const clusterNet = (ver = '1.0.0') => ({
  cniVersion: ver,
  name: `${tag}-cluster`,
  plugins: [
    {
      type: 'bridge',
      bridge,
      isGateway: true,
      ipMasq: false,
      ipam: { type: 'host-local', subnet: `10.${o2}.1.0/24`, dataDir: join(work, 'ipam-cluster') },
    },
  ],
});
const macvlanNet = () => ({
  cniVersion: '0.4.0',
  name: `${tag}-mv`,
  type: 'macvlan',
  master,
  mode: 'bridge',
  ipam: { type: 'host-local', subnet: `10.${o2}.2.0/24`, dataDir: join(work, 'ipam-mv') },
});

function multusConf(extra: Record<string, unknown>) {
  return {
    cniVersion: '1.0.0',
    name: 'multus-cni-network',
    type: 'multus',
    cniDir: join(work, 'multus'),
    binDir: GO,
    confDir: join(work, 'confdir'),
    ...extra,
  };
}

async function call(command: string, conf: unknown, ns: string, id: string) {
  return runPlugin(multusPlugin(), {
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: ns,
      CNI_IFNAME: 'eth0',
      CNI_PATH: `${BIN_DIR}:${GO}`,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${id}`,
    },
    stdin: JSON.stringify(conf),
  });
}

const leases = (dir: string) =>
  existsSync(dir) ? readdirSync(join(dir, readdirSync(dir)[0] ?? '.')).filter((f) => /^\d/.test(f)) : [];

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  mkdirSync(join(work, 'confdir'));
  if (!missing()) {
    spawnSync('ip', ['link', 'del', master]);
    execFileSync('ip', ['link', 'add', master, 'type', 'veth', 'peer', 'name', `${tag}m1`]);
    execFileSync('ip', ['link', 'set', master, 'up']);
  }
});

afterAll(() => {
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  spawnSync('ip', ['link', 'del', master]);
  spawnSync('ip', ['link', 'del', bridge]);
  spawnSync('ip', ['link', 'del', `${tag}ob`]);
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('multus delegates mode (Go plugins as delegates)', () => {
  it('ADD attaches eth0 and net1, returns the cluster network result; DEL removes both and the cache', async (ctx) => {
    need(ctx);
    const ns = netns('a');
    const conf = multusConf({ delegates: [clusterNet(), macvlanNet()] });
    const add = await call('ADD', conf, ns, `${tag}a`);
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    const res = JSON.parse(add.stdout);
    expect(res.cniVersion).toBe('1.0.0');
    expect(res.ips[0].address).toMatch(new RegExp(`^10\\.${o2}\\.1\\.\\d+/24$`));
    expect(res.interfaces.find((i: { sandbox?: string }) => i.sandbox)?.name).toBe('eth0');
    const addrs = inNs(ns, '-o', '-4', 'addr', 'show');
    expect(addrs).toMatch(new RegExp(`eth0\\s+inet 10\\.${o2}\\.1\\.`));
    expect(addrs).toMatch(new RegExp(`net1\\s+inet 10\\.${o2}\\.2\\.`));
    expect(existsSync(join(work, 'multus', `${tag}a`))).toBe(true);
    expect(leases(join(work, 'ipam-mv'))).toHaveLength(1);

    const check = await call('CHECK', conf, ns, `${tag}a`);
    expect(check.exitCode, check.stdout).toBe(0);

    const del = await call('DEL', conf, ns, `${tag}a`);
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    expect(inNs(ns, '-o', 'link', 'show')).not.toMatch(/eth0|net1/);
    expect(existsSync(join(work, 'multus', `${tag}a`))).toBe(false);
    expect(leases(join(work, 'ipam-mv'))).toHaveLength(0);
    expect(leases(join(work, 'ipam-cluster'))).toHaveLength(0);
    const again = await call('DEL', conf, ns, `${tag}a`);
    expect(again.exitCode, again.stdout).toBe(0);
  });

  it('a failing delegate stops ADD, rolls back what was attached and names the network', async (ctx) => {
    need(ctx);
    const ns = netns('b');
    const broken = { cniVersion: '1.0.0', name: `${tag}-broken`, type: 'no-such-plugin' };
    const conf = multusConf({ delegates: [clusterNet(), macvlanNet(), broken] });
    const add = await call('ADD', conf, ns, `${tag}b`);
    expect(add.exitCode).toBe(1);
    const err = JSON.parse(add.stdout);
    expect(err.msg).toContain(`error adding container to network "${tag}-broken"`);
    expect(err.msg).toContain('no-such-plugin');
    expect(inNs(ns, '-o', 'link', 'show')).not.toMatch(/eth0|net1/);
    expect(leases(join(work, 'ipam-mv'))).toHaveLength(0);
    expect(leases(join(work, 'ipam-cluster'))).toHaveLength(0);
  });

  it('DEL with a corrupt cache falls back to the config and names the file', async (ctx) => {
    need(ctx);
    const ns = netns('c');
    const logFile = join(work, 'multus.log');
    const conf = multusConf({ delegates: [clusterNet(), macvlanNet()], logFile });
    expect((await call('ADD', conf, ns, `${tag}c`)).exitCode).toBe(0);
    const cache = join(work, 'multus', `${tag}c`);
    writeFileSync(cache, '{"kind":"cniKitMultusV1","deleg');
    const del = await call('DEL', conf, ns, `${tag}c`);
    expect(del.exitCode, del.stdout).toBe(0);
    expect(del.stderr).toContain(cache);
    expect(readFileSync(logFile, 'utf8')).toContain(`[${tag}c] multus: cache file ${cache} is unusable`);
    expect(inNs(ns, '-o', 'link', 'show')).not.toMatch(/eth0|net1/);
    expect(leases(join(work, 'ipam-mv'))).toHaveLength(0);
  });

  it('clusterNetwork may be a file, a directory or a name in confDir', async (ctx) => {
    need(ctx);
    const dir = join(work, 'clusterdir');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, '10-cluster.conflist'), JSON.stringify(clusterNet('0.4.0')));
    writeFileSync(join(work, 'confdir', '20-cluster.conflist'), JSON.stringify(clusterNet('0.4.0')));
    for (const [i, ref] of [join(dir, '10-cluster.conflist'), dir, `${tag}-cluster`].entries()) {
      const ns = netns(`d${i}`);
      const conf = multusConf({ clusterNetwork: ref, cniVersion: '0.4.0' });
      const add = await call('ADD', conf, ns, `${tag}d${i}`);
      expect(add.exitCode, `${ref}: ${add.stdout}`).toBe(0);
      expect(JSON.parse(add.stdout).cniVersion).toBe('0.4.0');
      expect(inNs(ns, '-o', 'link', 'show')).toMatch(/eth0/);
      expect((await call('DEL', conf, ns, `${tag}d${i}`)).exitCode).toBe(0);
    }
  });

  it('the bundled binary runs the same flow as a real process', async (ctx) => {
    need(ctx);
    const ns = netns('e');
    const conf = multusConf({ delegates: [clusterNet(), macvlanNet()] });
    const run = (command: string) =>
      spawnSync(join(pluginDir(), 'multus'), [], {
        input: JSON.stringify(conf),
        encoding: 'utf8',
        env: {
          PATH: process.env.PATH ?? '',
          CNI_COMMAND: command,
          CNI_CONTAINERID: `${tag}e`,
          CNI_NETNS: ns,
          CNI_IFNAME: 'eth0',
          CNI_PATH: GO,
        },
      });
    const add = run('ADD');
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(inNs(ns, '-o', 'link', 'show')).toMatch(/net1/);
    const del = run('DEL');
    expect(del.status, del.stdout).toBe(0);
    expect(inNs(ns, '-o', 'link', 'show')).not.toMatch(/eth0|net1/);
  });

  it('DEL runs every delegate, reports every failure, and keeps the cache only with retryDeleteOnError', async (ctx) => {
    need(ctx);
    const failing = (n: string) => ({
      cniVersion: '1.0.0',
      name: n,
      type: 'debug',
      fail: { code: 11, msg: `${n} is busy` },
    });
    const ok = {
      cniVersion: '1.0.0',
      name: `${tag}-ok`,
      type: 'debug',
      recordFile: join(work, 'record.jsonl'),
    };
    for (const retry of [true, false]) {
      const id = `${tag}r${retry}`;
      const delegates = [failing(`${tag}-f1`), ok, failing(`${tag}-f2`)];
      const conf = multusConf({ delegates, retryDeleteOnError: retry });
      mkdirSync(join(work, 'multus'), { recursive: true });
      writeFileSync(
        join(work, 'multus', id),
        JSON.stringify({
          kind: 'cniKitMultusV1',
          containerId: id,
          delegates: delegates.map((c, i) => ({
            conf: c,
            name: c.name,
            ifname: i ? `net${i}` : 'eth0',
            master: i === 0,
          })),
        }),
      );
      const del = await call('DEL', conf, '', id);
      expect(del.exitCode).toBe(1);
      const err = JSON.parse(del.stdout);
      expect(err.code).toBe(11);
      expect(err.msg).toMatch(
        new RegExp(`network "${tag}-f2".*${tag}-f2 is busy.* / .*network "${tag}-f1".*${tag}-f1 is busy`),
      );
      expect(existsSync(join(work, 'multus', id))).toBe(retry);
    }
    // The healthy delegate in the middle was deleted both times.
    const dels = readFileSync(join(work, 'record.jsonl'), 'utf8').trim().split('\n');
    expect(dels.map((l) => JSON.parse(l).command)).toEqual(['DEL', 'DEL']);
  });

  it('CHECK skips a delegate whose cniVersion predates 0.4.0 and checks the others', async (ctx) => {
    need(ctx);
    const rec = join(work, 'check-record.jsonl');
    const dbg = (name: string, cniVersion: string) => ({ cniVersion, name, type: 'debug', recordFile: rec });
    const conf = multusConf({ delegates: [dbg(`${tag}-new`, '1.0.0'), dbg(`${tag}-old`, '0.3.1')] });
    const id = `${tag}chk`;
    const ns = netns('chk');
    const add = await call('ADD', conf, ns, id);
    expect(add.exitCode, add.stdout).toBe(0);
    const check = await call('CHECK', conf, ns, id);
    expect(check.exitCode, check.stdout).toBe(0);
    expect(check.stderr).toContain(
      `skipping CHECK of network ${tag}-old: its cniVersion 0.3.1 predates 0.4.0`,
    );
    const del = await call('DEL', conf, ns, id);
    expect(del.exitCode, del.stdout).toBe(0);
    const seen = readFileSync(rec, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { command: string; config: { name: string } })
      .map((r) => `${r.config.name.replace(tag, '')}:${r.command}`);
    expect(seen).toEqual(['-new:ADD', '-old:ADD', '-new:CHECK', '-old:DEL', '-new:DEL']);
  });

  it('a 300-character CNI_CONTAINERID: ADD is refused with code 4 before any delegate runs; DEL exits 0 and leaves no cache', async (ctx) => {
    need(ctx);
    const rec = join(work, 'long-record.jsonl');
    const dbg = (name: string) => ({ cniVersion: '1.0.0', name, type: 'debug', recordFile: rec });
    const conf = multusConf({ delegates: [dbg(`${tag}-l0`), dbg(`${tag}-l1`)] });
    const id = `${tag}${'f'.repeat(300)}`.slice(0, 300);
    const ns = netns('long');
    const add = await call('ADD', conf, ns, id);
    expect(add.exitCode).not.toBe(0);
    expect(JSON.parse(add.stdout)).toMatchObject({
      code: 4,
      msg: expect.stringContaining('the limit is 110 bytes'),
    });
    for (const cmd of ['DEL', 'DEL']) {
      const r = await call(cmd, conf, ns, id);
      expect(r.exitCode, `${cmd}: ${r.stdout}`).toBe(0);
    }
    expect(existsSync(rec)).toBe(false);
    expect(readdirSync(join(work, 'multus')).filter((n) => n.includes(id.slice(0, 20)))).toEqual([]);
  });

  it('the stock flannel conflist chaining a portmap that is not installed: ADD fails and the rollback still takes down flannel, bridge and host-local', (ctx) => {
    need(ctx);
    // Everything host-side (the bridge, the veth) lives in a node netns of this test's own.
    const node = netns('node');
    const pod = netns('fpod');
    const dir = join(work, 'stock-flannel');
    mkdirSync(join(dir, 'net.d'), { recursive: true });
    writeFileSync(
      join(dir, 'subnet.env'),
      `FLANNEL_NETWORK=10.${o2}.0.0/16\nFLANNEL_SUBNET=10.${o2}.9.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`,
    );
    // kube-flannel.yml's cni-conf.json, with only the host paths moved into the test's directory.
    const conflist = join(dir, 'net.d', '10-flannel.conflist');
    writeFileSync(
      conflist,
      JSON.stringify({
        name: 'cbr0',
        cniVersion: '0.3.1',
        plugins: [
          {
            type: 'flannel',
            delegate: { hairpinMode: true, isDefaultGateway: true },
            subnetFile: join(dir, 'subnet.env'),
            dataDir: join(dir, 'flannel'),
            ipam: { dataDir: join(dir, 'ipam') },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
        ],
      }),
    );
    // cni-kit ships a portmap now: a bin dir of everything else keeps it "not installed" here.
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    for (const t of readdirSync(pluginDir(node)))
      if (t !== 'portmap') symlinkSync(join(pluginDir(node), t), join(bin, t));
    const conf = {
      cniVersion: '0.3.1',
      name: 'multus-cni-network',
      type: 'multus',
      clusterNetwork: conflist,
      cniDir: join(dir, 'multus'),
      binDir: bin,
    };
    const run = (command: string) =>
      spawnSync('nsenter', [`--net=${node}`, join(bin, 'multus')], {
        input: JSON.stringify(conf),
        encoding: 'utf8',
        env: {
          PATH: process.env.PATH ?? '',
          CNI_COMMAND: command,
          CNI_CONTAINERID: `${tag}stock`,
          CNI_NETNS: pod,
          CNI_IFNAME: 'eth0',
          CNI_PATH: bin,
          CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=stock',
        },
        timeout: 60_000,
      });
    const add = run('ADD');
    expect(add.status, add.stdout + add.stderr).not.toBe(0);
    expect(JSON.parse(add.stdout).msg).toMatch(/portmap/);
    // Nothing of the attempt stays: no eth0 in the pod, no address held, no flannel or multus state.
    expect(inNs(pod, '-o', 'link', 'show')).not.toMatch(/eth0/);
    expect(leases(join(dir, 'ipam'))).toEqual([]);
    expect(existsSync(join(dir, 'flannel', `${tag}stock`))).toBe(false);
    expect(existsSync(join(dir, 'multus', `${tag}stock`))).toBe(false);
    // DEL afterwards still reports the missing plugin but takes down nothing twice and leaves nothing.
    run('DEL');
    expect(inNs(pod, '-o', 'link', 'show')).not.toMatch(/eth0/);
    expect(leases(join(dir, 'ipam'))).toEqual([]);
  });

  it('our own bridge, macvlan and whereabouts work as delegates too', async (ctx) => {
    need(ctx);
    for (const p of ['bridge', 'macvlan', 'whereabouts', 'host-local']) {
      if (!existsSync(join(BIN_DIR, p))) ctx.skip(`dist/bin/${p} is not built`);
    }
    const ns = netns('o');
    const ours = multusConf({
      binDir: BIN_DIR,
      delegates: [
        {
          ...clusterNet(),
          name: `${tag}-ocl`,
          plugins: [{ ...clusterNet().plugins[0], bridge: `${tag}ob` }],
        },
        {
          cniVersion: '1.0.0',
          name: `${tag}-omv`,
          type: 'macvlan',
          master,
          ipam: {
            type: 'whereabouts',
            range: `10.${o2}.9.0/24`,
            datastore: 'file',
            data_dir: join(work, 'wb'),
          },
        },
      ],
    });
    const add = await call('ADD', ours, ns, `${tag}o`);
    expect(add.exitCode, add.stdout + add.stderr).toBe(0);
    expect(inNs(ns, '-o', '-4', 'addr', 'show')).toMatch(new RegExp(`net1\\s+inet 10\\.${o2}\\.9\\.1/24`));
    const del = await call('DEL', ours, ns, `${tag}o`);
    expect(del.exitCode, del.stdout + del.stderr).toBe(0);
    expect(inNs(ns, '-o', 'link', 'show')).not.toMatch(/eth0|net1/);
    spawnSync('ip', ['link', 'del', `${tag}ob`]);
  });
});
