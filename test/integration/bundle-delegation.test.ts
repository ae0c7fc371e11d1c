// A bundled plugin whose IPAM type has no in-process allocator execs it from CNI_PATH through the
// delegate layer. Guards the bundling trap where esbuild drops a lazily-initialised module of ours
// (the delegate code) and the binary dies with "reading 'delimiter'" instead of delegating.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pluginDir } from '../helpers/mode.js';

const tag = `ckbd${process.pid % 100000}`;
const nodeNs = `${tag}n`;
const podNs = `${tag}p`;
const GO_HOST_LOCAL = '/usr/lib/cni/host-local';
let work = '';

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  for (const ns of [nodeNs, podNs]) {
    spawnSync('ip', ['netns', 'del', ns]);
    execFileSync('ip', ['netns', 'add', ns]);
  }
});
afterAll(() => {
  for (const ns of [nodeNs, podNs]) spawnSync('ip', ['netns', 'del', ns]);
  if (work) rmSync(work, { recursive: true, force: true });
});

function run(cmd: 'ADD' | 'DEL', ipamType: string, cniPath: string) {
  const conf = {
    cniVersion: '1.0.0',
    name: `${tag}net`,
    type: 'bridge',
    bridge: `${tag}br`,
    ipam: { type: ipamType, subnet: '10.251.7.0/24', dataDir: join(work, 'ipam') },
  };
  // the plugin runs inside a "node" netns so the bridge never touches the real host
  return spawnSync('ip', ['netns', 'exec', nodeNs, join(pluginDir(nodeNs), 'bridge')], {
    input: JSON.stringify(conf),
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH ?? '',
      CNI_COMMAND: cmd,
      CNI_CONTAINERID: 'bundle-delegation',
      CNI_NETNS: `/var/run/netns/${podNs}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: cniPath,
    },
  });
}

describe('bundled plugin delegating IPAM to another binary', () => {
  it('our bridge execs an IPAM plugin it does not run in-process (the Go host-local under another name)', (ctx) => {
    if (!existsSync(GO_HOST_LOCAL)) ctx.skip(`${GO_HOST_LOCAL} missing: install containernetworking-plugins`);
    const dir = join(work, 'bin');
    execFileSync('mkdir', ['-p', dir]);
    symlinkSync(GO_HOST_LOCAL, join(dir, 'go-host-local'));
    const add = run('ADD', 'go-host-local', dir);
    expect(add.status, add.stdout + add.stderr).toBe(0);
    const result = JSON.parse(add.stdout) as { ips: Array<{ address: string }> };
    expect(result.ips[0]?.address).toBe('10.251.7.2/24');
    // the Go plugin wrote its reservation file
    expect(readdirSync(join(work, 'ipam', `${tag}net`))).toContain('10.251.7.2');
    const del = run('DEL', 'go-host-local', dir);
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(readdirSync(join(work, 'ipam', `${tag}net`))).not.toContain('10.251.7.2');
  });

  it('a missing IPAM plugin is a clear error naming the type and the directories searched', () => {
    const add = run('ADD', 'no-such-ipam', join(work, 'empty'));
    expect(add.status).toBe(1);
    const err = JSON.parse(add.stdout) as { code: number; msg: string };
    expect(err.msg).toMatch(/no-such-ipam/);
    expect(err.msg).toMatch(/empty/);
  });
});
