// The native netlink engine's promise, checked on the built binaries under strace: bridge, macvlan
// and ptp with host-local IPAM run ADD, CHECK and DEL without starting a single child process
// (the plugin's own exec chain aside). The same calls with CNI_KIT_NETLINK=iproute2 start children,
// which shows the count sees them. Everything runs in a node netns and a container netns of the
// test's own.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN_DIR } from '../helpers/plugin.js';

const PID = process.pid;
const NODE = `nspn${PID}`;
const CTR = `nspc${PID}`;
const isRoot = process.getuid?.() === 0;
const hasStrace = spawnSync('strace', ['-V']).status === 0;
// Made at load: the configs below name their IPAM data dirs inside it.
const work = mkdtempSync(join(tmpdir(), `cnikit-spawns-${PID}-`));

beforeAll(() => {
  if (!isRoot || !hasStrace) return;
  execFileSync('ip', ['netns', 'add', NODE]);
  execFileSync('ip', ['netns', 'add', CTR]);
  // macvlan's master: one end of a veth pair in the node netns.
  execFileSync('ip', ['-n', NODE, 'link', 'add', 'mst0', 'type', 'veth', 'peer', 'name', 'mst1']);
  execFileSync('ip', ['-n', NODE, 'link', 'set', 'mst0', 'up']);
});
afterAll(() => {
  for (const n of [CTR, NODE]) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
  rmSync(work, { recursive: true, force: true });
});

interface Traced {
  status: number | null;
  stdout: string;
  /** Programs the plugin started, beyond its own exec chain (nsenter → binary → node). */
  children: string[];
}

/** Runs a plugin binary in the node netns under `strace -f -e execve` and lists what it exec'd. */
function traced(type: string, command: string, conf: object, extraEnv: Record<string, string> = {}): Traced {
  const log = join(work, `strace-${type}-${command}-${Math.random().toString(36).slice(2)}`);
  const r = spawnSync(
    'strace',
    [
      '-f',
      '-qq',
      '-e',
      'trace=execve',
      '-o',
      log,
      'nsenter',
      `--net=/var/run/netns/${NODE}`,
      join(BIN_DIR, type),
    ],
    {
      input: JSON.stringify(conf),
      encoding: 'utf8',
      env: {
        PATH: process.env.PATH ?? '',
        CNI_COMMAND: command,
        CNI_CONTAINERID: `ctr-${type}`,
        CNI_NETNS: `/var/run/netns/${CTR}`,
        CNI_IFNAME: 'eth0',
        CNI_PATH: BIN_DIR,
        ...extraEnv,
      },
      timeout: 20_000,
    },
  );
  const execs = readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => /execve\(/.test(l) && / = 0$/.test(l))
    .map((l) => /execve\("([^"]+)"/.exec(l)?.[1] ?? l);
  rmSync(log, { force: true });
  // nsenter itself, the plugin file (its shebang), then node: the plugin process.
  if (execs[0] && /\/nsenter$/.test(execs[0])) execs.shift();
  let nodeSeen = false;
  const children = execs.filter((p) => {
    if (p === join(BIN_DIR, type)) return false;
    if (!nodeSeen && /\/node$/.test(p)) {
      nodeSeen = true;
      return false;
    }
    return true;
  });
  return { status: r.status, stdout: r.stdout, children };
}

const ipam = (net: string) => ({
  type: 'host-local',
  subnet: `10.${net}.0.0/24`,
  dataDir: join(work, `ipam-${net}`),
});
const CONFS: Record<string, object> = {
  bridge: {
    cniVersion: '1.0.0',
    name: 'sp-br',
    type: 'bridge',
    bridge: 'spbr0',
    isGateway: true,
    ipam: ipam('91'),
  },
  macvlan: { cniVersion: '1.0.0', name: 'sp-mv', type: 'macvlan', master: 'mst0', ipam: ipam('92') },
  ptp: { cniVersion: '1.0.0', name: 'sp-ptp', type: 'ptp', ipMasq: false, ipam: ipam('93') },
};

describe('plugin binaries on the native engine start no child process', () => {
  for (const type of Object.keys(CONFS)) {
    it(`${type} + host-local: ADD, CHECK and DEL exec nothing; the iproute2 engine does`, (ctx) => {
      if (!isRoot) ctx.skip('needs root for network namespaces');
      if (!hasStrace) ctx.skip('strace is not installed (Debian package strace)');
      if (!existsSync(join(BIN_DIR, type))) throw new Error(`dist/bin/${type} is missing; run npm run build`);
      const conf = CONFS[type]!;
      const add = traced(type, 'ADD', conf);
      expect(add.status, add.stdout).toBe(0);
      const prevResult = JSON.parse(add.stdout) as object;
      const check = traced(type, 'CHECK', { ...conf, prevResult });
      expect(check.status, check.stdout).toBe(0);
      const del = traced(type, 'DEL', conf);
      expect(del.status, del.stdout).toBe(0);
      expect({ add: add.children, check: check.children, del: del.children }).toEqual({
        add: [],
        check: [],
        del: [],
      });
      // Control: the same calls through iproute2 exec ip (so the count above can see children).
      const env = { CNI_KIT_NETLINK: 'iproute2' };
      const add2 = traced(type, 'ADD', conf, env);
      expect(add2.status, add2.stdout).toBe(0);
      const del2 = traced(type, 'DEL', conf, env);
      expect(del2.status, del2.stdout).toBe(0);
      expect(add2.children.length).toBeGreaterThan(0);
      expect(add2.children.some((p) => /\/(ip|nsenter|sh)$/.test(p))).toBe(true);
    });
  }
});

describe('where the FFI package cannot load', () => {
  it('auto falls back to iproute2 (said once with NODE_DEBUG=cni-kit); native refuses with a CNI error', (ctx) => {
    if (!isRoot) ctx.skip('needs root for network namespaces');
    // A copy of the bridge binary whose lib/ lacks koffi's native package.
    const bin = join(work, 'nokoffi');
    cpSync(BIN_DIR, bin, { recursive: true });
    rmSync(join(bin, 'lib', 'node_modules'), { recursive: true, force: true });
    const conf = { ...CONFS.bridge!, name: 'sp-nk', bridge: 'spbr9', ipam: ipam('94') };
    const run = (command: string, env: Record<string, string>) =>
      spawnSync('nsenter', [`--net=/var/run/netns/${NODE}`, join(bin, 'bridge')], {
        input: JSON.stringify(conf),
        encoding: 'utf8',
        env: {
          PATH: process.env.PATH ?? '',
          CNI_COMMAND: command,
          CNI_CONTAINERID: 'ctr-nokoffi',
          CNI_NETNS: `/var/run/netns/${CTR}`,
          CNI_IFNAME: 'eth1',
          CNI_PATH: bin,
          ...env,
        },
        timeout: 20_000,
      });
    const add = run('ADD', { NODE_DEBUG: 'cni-kit' });
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(add.stderr.match(/netlink: iproute2 engine \(auto: the FFI package did not load\)/g)).toHaveLength(
      1,
    );
    const forced = run('DEL', { CNI_KIT_NETLINK: 'native' });
    expect(forced.status).not.toBe(0);
    const err = JSON.parse(forced.stdout) as { code: number; msg: string; details?: string };
    expect(err.code).toBe(999);
    expect(err.msg).toMatch(/native netlink backend cannot load the FFI package koffi/);
    expect(err.details).toMatch(/CNI_KIT_NETLINK=iproute2/);
    const del = run('DEL', {});
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(spawnSync('ip', ['-n', CTR, 'link', 'show', 'eth1']).status).not.toBe(0);
    // koffi present but the engine's core missing (lib/cni-kit not copied): the same fallback.
    cpSync(join(BIN_DIR, 'lib', 'node_modules'), join(bin, 'lib', 'node_modules'), { recursive: true });
    rmSync(join(bin, 'lib', 'cni-kit'), { recursive: true, force: true });
    const add2 = run('ADD', { NODE_DEBUG: 'cni-kit' });
    expect(add2.status, add2.stdout + add2.stderr).toBe(0);
    expect(add2.stderr).toMatch(/netlink: iproute2 engine \(auto: the native engine's code did not load/);
    expect(run('DEL', {}).status).toBe(0);
  });
});
