// `cni-kit exec` (the built CLI, dist/cli.cjs) as cnitool's users run it: the Go reference
// plugins and ours in network namespaces of the test's own, cnitool's environment variables,
// network names looked up in a config directory, the libcni cache, GC with attachments still in
// use, STATUS, VERSION, and the error paths (exit 1 with the CNI error, exit 2 on usage).
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultContainerId } from '../../src/cli/exec.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const cli = join(root, 'dist/cli.cjs');
const ours = join(root, 'dist/bin');
const GO = '/usr/lib/cni';
const tag = `ckex${process.pid % 10000}`;
const node = `${tag}-node`;
const pods = [`${tag}-a`, `${tag}-b`];
const work = mkdtempSync(join(tmpdir(), `${tag}-`));
const cache = join(work, 'cache');
const made: string[] = [];

beforeAll(() => {
  for (const ns of [node, ...pods]) {
    execFileSync('ip', ['netns', 'add', ns]);
    made.push(ns);
  }
});
afterAll(() => {
  for (const ns of made.reverse()) spawnSync('ip', ['netns', 'del', ns]);
  rmSync(work, { recursive: true, force: true });
});

/** Runs the CLI inside the node namespace; env holds cnitool's variables where a test sets them. */
function cniKit(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync('nsenter', [`--net=/run/netns/${node}`, process.execPath, cli, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', ...env },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function conflist(name: string, plugin: Record<string, unknown>, cniVersion = '1.0.0'): string {
  const file = join(work, `${name}.conflist`);
  writeFileSync(file, JSON.stringify({ cniVersion, name, plugins: [plugin] }));
  return file;
}

const bridgeNet = (bridge: string, subnet: string) => ({
  type: 'bridge',
  bridge,
  isGateway: true,
  ipam: { type: 'host-local', subnet, dataDir: join(work, 'ipam') },
});

const cacheFiles = () =>
  existsSync(join(cache, 'results')) ? readdirSync(join(cache, 'results')).sort() : [];
const links = (ns: string) =>
  (
    JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'link', 'show'], { encoding: 'utf8' })) as {
      ifname: string;
    }[]
  ).map((l) => l.ifname);

const need = (ctx: { skip: (m: string) => void }, go = false) => {
  if (!existsSync(cli)) ctx.skip('dist/cli.cjs is not built: run npm run build (npm test does)');
  if (go && !existsSync(join(GO, 'bridge'))) ctx.skip(`the Go reference plugins are not installed in ${GO}`);
};

describe('cni-kit exec', () => {
  it('add, check and del through the Go plugins, with cnitool defaults: container ID from the netns, the cache, IgnoreUnknown', (ctx) => {
    need(ctx, true);
    const file = conflist('goexec', bridgeNet(`${tag}g0`, '10.131.0.0/24'));
    const common = ['--netns', pods[0]!, '--path', GO, '--cache', cache];
    // The Go plugins refuse unknown CNI_ARGS keys unless IgnoreUnknown is set, as runtimes do.
    const add = cniKit(['exec', 'add', file, ...common], {
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web',
    });
    expect(add.stderr).toBe('');
    expect(add.status).toBe(0);
    const result = JSON.parse(add.stdout) as { cniVersion: string; ips: { address: string }[] };
    expect(result.cniVersion).toBe('1.0.0');
    expect(result.ips[0]?.address).toMatch(/^10\.131\.0\.\d+\/24$/);
    expect(links(pods[0]!)).toContain('eth0');
    // libcni's cache key: network name, container ID (cnitool's default) and ifname.
    const id = defaultContainerId(`/run/netns/${pods[0]}`);
    expect(id).toMatch(/^cni-[0-9a-f]{20}$/);
    expect(cacheFiles()).toEqual([`goexec-${id}-eth0`]);
    const cached = JSON.parse(readFileSync(join(cache, 'results', `goexec-${id}-eth0`), 'utf8')) as {
      cniArgs?: [string, string][];
    };
    expect(cached.cniArgs).toContainEqual(['K8S_POD_NAME', 'web']);
    expect(cniKit(['exec', 'check', file, ...common]).status).toBe(0);
    const del = cniKit(['exec', 'del', file, ...common]);
    expect(del.stderr).toBe('');
    expect(del.status).toBe(0);
    expect(links(pods[0]!)).not.toContain('eth0');
    expect(cacheFiles()).toEqual([]);
  });

  it('finds a network by name in NETCONFPATH and takes CNI_PATH and CNI_IFNAME from the environment', (ctx) => {
    need(ctx, true);
    const dir = join(work, 'net.d');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, '10-named.conflist'),
      JSON.stringify({
        cniVersion: '0.4.0',
        name: 'named',
        plugins: [bridgeNet(`${tag}n0`, '10.132.0.0/24')],
      }),
    );
    const env = { NETCONFPATH: dir, CNI_PATH: GO, CNI_IFNAME: 'net5' };
    const add = cniKit(
      ['exec', 'add', 'named', '--netns', pods[1]!, '--cache', cache, '--id', 'c-named'],
      env,
    );
    expect(add.status).toBe(0);
    expect((JSON.parse(add.stdout) as { cniVersion: string }).cniVersion).toBe('0.4.0');
    expect(links(pods[1]!)).toContain('net5');
    expect(
      cniKit(['exec', 'del', 'named', '--netns', pods[1]!, '--cache', cache, '--id', 'c-named'], env).status,
    ).toBe(0);
    expect(links(pods[1]!)).not.toContain('net5');
    const missing = cniKit(['exec', 'add', 'nosuchnet', '--netns', pods[1]!, '--cache', cache], env);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain('nosuchnet');
  });

  it('gc deletes every cached attachment of the network except those named by --valid (our plugins, 1.1.0)', (ctx) => {
    need(ctx);
    const file = conflist('gcnet', bridgeNet(`${tag}c0`, '10.133.0.0/24'), '1.1.0');
    const common = ['--path', ours, '--cache', cache];
    for (const [i, pod] of pods.entries()) {
      const r = cniKit(['exec', 'add', file, '--netns', pod, '--id', `gc${i}`, ...common]);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    }
    expect(cacheFiles()).toEqual(['gcnet-gc0-eth0', 'gcnet-gc1-eth0']);
    const gc = cniKit(['exec', 'gc', file, '--valid', 'gc1/eth0', ...common]);
    expect(gc.stderr).toBe('');
    expect(gc.status).toBe(0);
    expect(cacheFiles()).toEqual(['gcnet-gc1-eth0']);
    expect(links(pods[0]!)).not.toContain('eth0');
    expect(links(pods[1]!)).toContain('eth0');
    expect(cniKit(['exec', 'status', file, ...common]).status).toBe(0);
    expect(cniKit(['exec', 'del', file, '--netns', pods[1]!, '--id', 'gc1', ...common]).status).toBe(0);
    expect(cacheFiles()).toEqual([]);
  });

  it('version prints each plugin answer; failures exit 1 with the CNI error, --json prints it on stdout', (ctx) => {
    need(ctx);
    const file = conflist('vnet', bridgeNet(`${tag}v0`, '10.134.0.0/24'));
    const v = cniKit(['exec', 'version', file, '--path', ours]);
    expect(v.status).toBe(0);
    const info = JSON.parse(v.stdout) as Record<string, { supportedVersions: string[] }>;
    expect(info.bridge?.supportedVersions).toContain('1.0.0');
    const noPlugins = [
      'exec',
      'add',
      file,
      '--netns',
      pods[0]!,
      '--path',
      join(work, 'empty'),
      '--cache',
      cache,
    ];
    const notFound = cniKit(noPlugins);
    expect(notFound.status).toBe(1);
    expect(notFound.stderr).toMatch(/failed to find plugin "bridge".*\(code 7\)/);
    const asJson = cniKit([...noPlugins, '--json']);
    expect(asJson.status).toBe(1);
    expect(JSON.parse(asJson.stdout)).toMatchObject({ code: 7 });
    expect(cacheFiles()).toEqual([]);
  });

  it('usage mistakes exit 2 with the help: unknown verb, missing --netns, a bad --cap, --valid without ifname', (ctx) => {
    need(ctx);
    const file = conflist('unet', { type: 'debug' });
    for (const args of [
      ['exec', 'frobnicate', file],
      ['exec', 'add', file],
      ['exec', 'add', file, '--netns', pods[0]!, '--cap', '[1]'],
      ['exec', 'gc', file, '--valid', 'nope'],
      ['exec', 'add', join(work, 'missing.conflist'), '--netns', pods[0]!],
    ]) {
      const r = cniKit(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toContain('usage: cni-kit exec');
    }
    const top = cniKit(['nosuchverb']);
    expect(top.status).toBe(2);
    expect(top.stderr).toContain('unknown command');
    const help = cniKit(['exec', '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('NETCONFPATH');
  });
});
