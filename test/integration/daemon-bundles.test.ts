// The real `cni-kit daemon` process over the built bundles, inside a node network namespace of the
// test's own: bridge + host-local ADD/CHECK/DEL for a pod answer byte for byte what exec'ing
// dist/bin/bridge prints (random MACs and host veth names aside), the pod's eth0 is configured,
// host-local runs inside the daemon (never exec'd), the loader skips what is not a bundle and
// reports a bundle without the host hand-over, SIGTERM drains a call in flight, --probe, and an
// empty plugins folder.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUNDLES, CLI, startDaemon, type TestDaemon } from '../helpers/daemon.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tag = `dtb${process.pid % 100000}`;
const nodeNs = `${tag}-node`;
const nodePath = `/var/run/netns/${nodeNs}`;
const netnses: string[] = [];
const built = existsSync(CLI) && existsSync(join(BUNDLES, 'bridge'));
const canRun = built && process.getuid?.() === 0;

let work = '';
let plugins = '';
let cniPath = '';
let marker = '';
let daemon: TestDaemon | undefined;
let socket = '';

function newNetns(name: string): string {
  spawnSync('ip', ['netns', 'del', name]);
  execFileSync('ip', ['netns', 'add', name]);
  netnses.push(name);
  return `/var/run/netns/${name}`;
}

const SLEEPY = `import { pluginMain } from 'cni-kit';
pluginMain({
  add: async (ctx) => {
    await new Promise((r) => setTimeout(r, Number(ctx.env.SLEEP_MS ?? '1000')));
    return { interfaces: [{ name: ctx.ifname }] };
  },
});
`;

beforeAll(async () => {
  if (!canRun) return;
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
  newNetns(nodeNs);
  execFileSync('ip', ['-n', nodeNs, 'link', 'set', 'lo', 'up']);
  // The daemon's folder: the built bundles (with their lib/ sidecars and package.json), a file
  // that is no bundle, a bundle made before the host hand-over existed, and a slow test plugin.
  plugins = join(work, 'plugins');
  cpSync(BUNDLES, plugins, { recursive: true });
  writeFileSync(join(plugins, 'README'), 'not a plugin\n');
  writeFileSync(
    join(plugins, 'oldstyle'),
    '#!/usr/bin/env node\n// cni-kit plugin oldstyle\n"use strict";process.exit(0);\n',
    { mode: 0o755 },
  );
  writeFileSync(join(work, 'sleepy.ts'), SLEEPY);
  const b = spawnSync(
    process.execPath,
    [
      CLI,
      'build',
      '--cni-kit-source',
      join(root, 'src'),
      join(work, 'sleepy.ts'),
      '-o',
      join(plugins, 'sleepy'),
    ],
    { cwd: work, encoding: 'utf8', timeout: 120_000 },
  );
  if (b.status !== 0) throw new Error(`cni-kit build sleepy failed:\n${b.stdout}${b.stderr}`);
  // CNI_PATH: "host-local" is a cni-kit bundle (so the in-process rule applies) that records being
  // exec'd before running the real one.
  cniPath = join(work, 'cnipath');
  mkdirSync(cniPath);
  marker = join(work, 'host-local-was-execd');
  writeFileSync(
    join(cniPath, 'host-local'),
    `#!/usr/bin/env node\n// cni-kit plugin host-local\n"use strict";require("node:fs").appendFileSync(${JSON.stringify(marker)}, "ran\\n");require(${JSON.stringify(join(BUNDLES, 'host-local'))});\n`,
    { mode: 0o755 },
  );
  writeFileSync(join(cniPath, 'package.json'), '{"type":"commonjs"}\n');
  socket = join(work, 'run', 'daemon.sock');
  daemon = await startDaemon({ netns: nodePath, plugins, socket, extraArgs: ['--log-level', 'info'] });
}, 180_000);

afterAll(async () => {
  await daemon?.kill().catch(() => {});
  for (const n of netnses) spawnSync('ip', ['netns', 'del', n]);
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Reply {
  status: number;
  body: string;
}
function post(sock: string, env: Record<string, string>, stdin: string, plugin: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(JSON.stringify({ env, config: Buffer.from(stdin).toString('base64') }));
    const req = request(
      {
        socketPath: sock,
        path: '/cni',
        method: 'POST',
        agent: false,
        headers: {
          Host: 'cni-kit',
          'Content-Type': 'application/json',
          'Content-Length': String(body.length),
          'X-Cni-Kit-Shim': '1',
          'X-Cni-Kit-Plugin': plugin,
          Connection: 'close',
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Execs a bundle in the node netns, as the runtime would there. */
function execInNode(bin: string, env: Record<string, string>, stdin: string) {
  const r = spawnSync('nsenter', [`--net=${nodePath}`, bin], {
    env: { PATH: process.env.PATH ?? '', ...env },
    input: stdin,
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const cniEnv = (command: string, cid: string, netns: string) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: cid,
  CNI_NETNS: netns,
  CNI_IFNAME: 'eth0',
  CNI_PATH: cniPath,
});

/** The parts of a result that differ between two attachments made alike: random MACs and host veth names. */
const modMac = (s: string) =>
  s
    .replace(/"mac": "[0-9a-f:]{17}"/g, '"mac": "<mac>"')
    .replace(/"name": "veth[0-9a-f]{8}"/g, '"name": "veth<random>"');

describe.runIf(canRun)('cni-kit daemon process over the built bundles', () => {
  it('bridge + host-local ADD/CHECK/DEL through the daemon answer what exec’ing dist/bin/bridge prints, and configure the pod', async () => {
    const pod = newNetns(`${tag}-pod`);
    for (const version of ['1.0.0', '0.4.0']) {
      const conf = (dataDir: string, prevResult?: unknown) =>
        JSON.stringify({
          cniVersion: version,
          name: `${tag}net`,
          type: 'bridge',
          bridge: `${tag}br`,
          isGateway: true,
          ipam: { type: 'host-local', subnet: '10.77.0.0/24', dataDir },
          ...(prevResult ? { prevResult } : {}),
        });
      const d1 = join(work, `ipam-daemon-${version}`);
      const d2 = join(work, `ipam-exec-${version}`);
      const cid = `c-${version}`;
      // Through the daemon.
      const add = await post(socket, cniEnv('ADD', cid, pod), conf(d1), 'bridge');
      expect(add.status, add.body).toBe(200);
      const result = JSON.parse(add.body);
      const ip = result.ips[0].address as string;
      expect(ip).toBe('10.77.0.2/24');
      const shown = JSON.parse(
        execFileSync('ip', ['-n', pod.split('/').pop() as string, '-j', 'addr', 'show', 'eth0'], {
          encoding: 'utf8',
        }),
      );
      expect(
        shown[0].addr_info.map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`),
      ).toContain(ip);
      // The flags are set synchronously; operstate follows from the kernel's link-watch worker.
      expect(shown[0].flags).toEqual(expect.arrayContaining(['UP', 'LOWER_UP']));
      const check = await post(socket, cniEnv('CHECK', cid, pod), conf(d1, result), 'bridge');
      expect(check, check.body).toEqual({ status: 200, body: '' });
      const del = await post(socket, cniEnv('DEL', cid, pod), conf(d1), 'bridge');
      expect(del, del.body).toEqual({ status: 200, body: '' });
      expect(spawnSync('ip', ['-n', pod.split('/').pop() as string, 'link', 'show', 'eth0']).status).not.toBe(
        0,
      );
      // The same call exec'd, in the same node netns and pod, with a fresh data dir of its own.
      const ex = execInNode(join(BUNDLES, 'bridge'), cniEnv('ADD', cid, pod), conf(d2));
      expect(ex.status, ex.stdout + ex.stderr).toBe(0);
      expect(modMac(add.body)).toBe(modMac(ex.stdout));
      const exCheck = execInNode(
        join(BUNDLES, 'bridge'),
        cniEnv('CHECK', cid, pod),
        conf(d2, JSON.parse(ex.stdout)),
      );
      expect(exCheck.status, exCheck.stdout + exCheck.stderr).toBe(0);
      expect(exCheck.stdout).toBe(check.body);
      const exDel = execInNode(join(BUNDLES, 'bridge'), cniEnv('DEL', cid, pod), conf(d2));
      expect(exDel.status, exDel.stdout + exDel.stderr).toBe(0);
      expect(exDel.stdout).toBe(del.body);
    }
    // host-local ran in-process every time: the recording bundle in CNI_PATH was never exec'd.
    expect(existsSync(marker)).toBe(false);
  });

  it('host-local served directly by the daemon, in-process; the recorder in CNI_PATH does record an exec', async () => {
    const pod = newNetns(`${tag}-hl`);
    const conf = JSON.stringify({
      cniVersion: '1.0.0',
      name: `${tag}hl`,
      type: 'host-local',
      ipam: { type: 'host-local', subnet: '10.78.0.0/24', dataDir: join(work, 'ipam-hl') },
    });
    const add = await post(socket, cniEnv('ADD', 'c-hl', pod), conf, 'host-local');
    expect(add.status, add.body).toBe(200);
    expect(JSON.parse(add.body).ips[0].address).toBe('10.78.0.2/24');
    expect(readdirSync(join(work, 'ipam-hl', `${tag}hl`))).toContain('10.78.0.2');
    const del = await post(socket, cniEnv('DEL', 'c-hl', pod), conf, 'host-local');
    expect(del).toEqual({ status: 200, body: '' });
    expect(readdirSync(join(work, 'ipam-hl', `${tag}hl`))).not.toContain('10.78.0.2');
    expect(existsSync(marker)).toBe(false);
    // The recorder works: exec'd, it leaves its mark (so its absence above means something).
    const v = spawnSync(join(cniPath, 'host-local'), [], {
      env: { PATH: process.env.PATH ?? '', CNI_COMMAND: 'VERSION' },
      encoding: 'utf8',
    });
    expect(v.status, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout).supportedVersions).toContain('1.0.0');
    expect(existsSync(marker)).toBe(true);
    rmSync(marker);
  });

  it('the loader skips a file that is no bundle and reports one built without the host hand-over', () => {
    const records = (daemon as TestDaemon)
      .log()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
    const skipped = records.filter((r) => r.msg === 'bundle not served');
    expect(skipped).toHaveLength(1);
    expect(skipped[0].file).toBe(join(plugins, 'oldstyle'));
    expect(skipped[0].reason).toMatch(/cannot run inside the daemon; rebuild it with this cni-kit/);
    expect(records.some((r) => JSON.stringify(r).includes('README'))).toBe(false);
    const serving = records.find((r) => r.msg === 'serving');
    expect(serving.plugins).toEqual(expect.arrayContaining(['bridge', 'host-local', 'sleepy', 'multus']));
    expect(serving.plugins).not.toContain('oldstyle');
  });

  it('--probe readyz exits 0 against the live daemon and 1 against none', () => {
    const live = spawnSync(process.execPath, [CLI, 'daemon', '--probe', 'readyz', '--socket', socket], {
      encoding: 'utf8',
    });
    expect(live.status, live.stdout + live.stderr).toBe(0);
    expect(live.stdout).toBe('readyz: 200\n');
    const none = join(work, 'none', 'daemon.sock');
    const dead = spawnSync(process.execPath, [CLI, 'daemon', '--probe', 'readyz', '--socket', none], {
      encoding: 'utf8',
    });
    expect(dead.status).toBe(1);
    expect(dead.stdout).toContain(`no daemon answers at ${none}`);
  });

  it('an empty plugins folder: exit 1 naming the folder', () => {
    const empty = join(work, 'empty');
    mkdirSync(empty);
    const r = spawnSync(
      process.execPath,
      [CLI, 'daemon', '--plugins', empty, '--socket', join(work, 'empty-run', 'd.sock')],
      { encoding: 'utf8', timeout: 30_000 },
    );
    expect(r.status).toBe(1);
    expect(r.stdout + r.stderr).toContain(`no cni-kit plugin bundles in ${empty}`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('a second daemon on the live socket exits 1 naming it; the first keeps serving', () => {
    const r = spawnSync(process.execPath, [CLI, 'daemon', '--plugins', plugins, '--socket', socket], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(1);
    expect(r.stdout + r.stderr).toContain(`${socket}: a daemon is listening there`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    const live = spawnSync(process.execPath, [CLI, 'daemon', '--probe', 'healthz', '--socket', socket], {
      encoding: 'utf8',
    });
    expect(live.status).toBe(0);
  });

  it('killed (SIGKILL), a daemon leaves its socket file; a restarted one replaces it and serves, also multus-shim on multus.sock', async () => {
    const run = join(work, 'restart');
    const multusDir = join(work, 'multus-run');
    const sock = join(run, 'daemon.sock');
    const args = ['--multus', '--multus-socket-dir', multusDir];
    const first = await startDaemon({ netns: nodePath, plugins, socket: sock, extraArgs: args });
    await first.kill();
    expect(statSync(sock).isSocket()).toBe(true);
    const second = await startDaemon({ netns: nodePath, plugins, socket: sock, extraArgs: args });
    try {
      expect(second.log()).toMatch(/replaced a socket file left by an earlier daemon/);
      const multusSock = join(multusDir, 'multus.sock');
      expect(statSync(multusDir).mode & 0o777).toBe(0o700);
      expect(statSync(multusSock).mode & 0o777).toBe(0o600);
      // An unknown type through multus.sock lists what is served, multus-shim among it.
      const r = await post(
        multusSock,
        cniEnv('ADD', 'c-m', '/var/run/netns/none'),
        '{"cniVersion":"1.0.0","name":"n","type":"nope"}',
        'x',
      );
      expect(r.status).toBe(400);
      expect(JSON.parse(r.body).msg).toMatch(/it serves .*multus, multus-shim/);
    } finally {
      expect(await second.stop()).toBe(0);
    }
    expect(existsSync(sock)).toBe(false);
  });

  // Last: it stops the daemon.
  it('SIGTERM with a call in flight: the call is answered 200, the daemon exits 0, the socket file is gone', async () => {
    const d = daemon as TestDaemon;
    const t0 = Date.now();
    const call = post(
      socket,
      { ...cniEnv('ADD', 'c-sleepy', '/var/run/netns/none'), SLEEP_MS: '1500' },
      JSON.stringify({ cniVersion: '1.0.0', name: 'slow', type: 'sleepy' }),
      'sleepy',
    );
    await new Promise((r) => setTimeout(r, 400));
    const stopped = d.stop();
    const r = await call;
    expect(r.status, r.body).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }] });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    expect(await stopped).toBe(0);
    expect(existsSync(socket)).toBe(false);
    expect(statSync(join(work, 'run')).mode & 0o777).toBe(0o700);
    daemon = undefined;
    expect(d.log()).toMatch(/"msg":"SIGTERM received"/);
  });
});

// Two bundles, each with its own copy of the SDK (and so of the stdout guard), served by one
// daemon in this process: their calls overlap, print, and finish in any order; the guard's state
// is shared through a global, so console.* and process.stdout.write are the originals again at
// the end and every line reached the right call's log.
const NOISY = (name: string) => `import { pluginMain } from 'cni-kit';
pluginMain({
  add: async (ctx) => {
    console.log('${name} says ' + ctx.containerId);
    const gate = (globalThis as any).__daemonTestGate;
    if (gate) await gate(ctx.containerId);
    process.stdout.write('${name} wrote ' + ctx.containerId + '\\n');
    return { interfaces: [{ name: ctx.ifname }] };
  },
});
`;

describe.runIf(built)('two SDK copies in one daemon process', () => {
  it('overlapping calls of two bundles that print: clean replies, lines in the right call’s log, console restored', async () => {
    const { loadPluginBundles, startDaemon: startInProcess, jsonLogger } = await import('cni-kit/daemon');
    const dir = mkdtempSync(join(tmpdir(), `${tag}-noisy-`));
    const gates = new Map<string, () => void>();
    const g = globalThis as { __daemonTestGate?: (id: string) => Promise<void> };
    g.__daemonTestGate = (id) => new Promise<void>((r) => gates.set(id, r));
    const lines: Array<Record<string, unknown>> = [];
    const origLog = console.log;
    const origWrite = process.stdout.write;
    let d: Awaited<ReturnType<typeof startInProcess>> | undefined;
    try {
      for (const name of ['noisya', 'noisyb']) {
        writeFileSync(join(dir, `${name}.ts`), NOISY(name));
        const b = spawnSync(
          process.execPath,
          [CLI, 'build', '--cni-kit-source', join(root, 'src'), `${name}.ts`, '-o', join('out', name)],
          { cwd: dir, encoding: 'utf8', timeout: 120_000 },
        );
        expect(b.status, b.stdout + b.stderr).toBe(0);
      }
      const { plugins: loaded, skipped } = loadPluginBundles([join(dir, 'out')]);
      expect(skipped).toEqual([]);
      expect(loaded.map((p) => p.type).sort()).toEqual(['noisya', 'noisyb']);
      const sock = join(dir, 'run', 'd.sock');
      d = await startInProcess({
        plugins: Object.fromEntries(loaded.map((p) => [p.type, p.plugin])),
        socket: sock,
        logger: jsonLogger('debug', (l) => lines.push(JSON.parse(l))),
      });
      const ids = ['a1', 'b1', 'a2', 'b2', 'a3', 'b3'];
      const calls = ids.map((id) =>
        post(
          sock,
          { CNI_COMMAND: 'ADD', CNI_CONTAINERID: id, CNI_NETNS: '/var/run/netns/none', CNI_IFNAME: 'eth0' },
          JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: id.startsWith('a') ? 'noisya' : 'noisyb' }),
          id.startsWith('a') ? 'noisya' : 'noisyb',
        ),
      );
      // A call that settles before its gate opens is the reason a gate is missing: show its reply.
      const early: string[] = [];
      calls.forEach((c, i) => {
        c.then(
          (r) => gates.has(ids[i] as string) || early.push(`${ids[i]}: ${r.status} ${r.body}`),
          (e: Error) => early.push(`${ids[i]}: ${e.message}`),
        );
      });
      const end = Date.now() + 20_000;
      while (gates.size < ids.length && early.length === 0 && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(
        [...gates.keys()].sort(),
        `calls that ended without reaching the plugin: ${early.join('; ')}`,
      ).toEqual([...ids].sort());
      expect(console.log).not.toBe(origLog);
      // Finish interleaved, the copy that installed its guard first (noisya) done first: with a
      // guard per copy it would restore the console under noisyb's running call.
      for (const id of ['b2', 'a1', 'a3', 'b3', 'a2', 'b1']) {
        gates.get(id)?.();
        await new Promise((r) => setTimeout(r, 5));
      }
      const replies = await Promise.all(calls);
      replies.forEach((r, i) => {
        expect(r.status, r.body).toBe(200);
        expect(JSON.parse(r.body)).toEqual({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }] });
        const id = ids[i] as string;
        const done = lines.find((l) => l.msg === 'call done' && l.containerId === id);
        const own = lines.filter((l) => l.source === 'plugin' && l.callId === done?.callId).map((l) => l.msg);
        const name = id.startsWith('a') ? 'noisya' : 'noisyb';
        expect(own).toEqual([`${name} says ${id}`, `${name} wrote ${id}`]);
      });
      expect(console.log).toBe(origLog);
      expect(process.stdout.write).toBe(origWrite);
    } finally {
      for (const r of gates.values()) r();
      await d?.close();
      delete g.__daemonTestGate;
      rmSync(dir, { recursive: true, force: true });
    }
    // Two bundles are built first (esbuild, a few seconds on a loaded machine).
  }, 120_000);
});
