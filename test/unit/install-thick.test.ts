// deploy/install.mjs in thick mode (daemon mode), with temp dirs standing in for the image and the
// host: Node bundles into <bin>/cni-kit/ (shebang pointed at the installed runtime, lib/ and
// package.json beside them), shims into <bin>/<type> with the trailer's fallback= rewritten to
// cni-kit/<type>; every file replaced by rename (a shim that is running keeps its inode: no "text
// file busy"); a second run changes nothing; a bad image changes nothing; exec mode as before.
// The shims here are real ELF programs (/bin/true, /bin/sleep) with a trailer appended, as
// `npm run build` makes them from the native client.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { runInstallerUntilWaiting } from '../helpers/installer.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const installer = join(root, 'deploy/install.mjs');
const work = mkdtempSync(join(tmpdir(), `ckthick-${process.pid}-`));
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const VERSION = '{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}';
const trailer = (f: { type: string; fallback: string; version?: string; socket?: string | undefined }) =>
  `\n--cni-kit-shim--\ntype=${f.type}\nfallback=${f.fallback}\nversion=${f.version ?? VERSION}\n` +
  `${f.socket ? `socket=${f.socket}\n` : ''}--end--\n`;
const bundle = (type: string) => `#!/usr/bin/env node\n// cni-kit plugin ${type}\nconsole.log('${type}');\n`;

let n = 0;
/** An image (bin/<type> bundles, bin/lib/, shim/<type>) and an empty host bin dir. */
function setup(types: string[], shimBase = '/bin/true') {
  const dir = join(work, `case-${n++}`);
  const image = join(dir, 'image');
  mkdirSync(join(image, 'bin/lib/heavy'), { recursive: true });
  mkdirSync(join(image, 'shim'));
  writeFileSync(join(image, 'bin/lib/heavy/index.cjs'), 'module.exports = 1;\n');
  writeFileSync(join(image, 'bin/lib/heavy/stamp'), 'build stamp');
  for (const t of types) {
    writeFileSync(join(image, 'bin', t), bundle(t), { mode: 0o755 });
    const shim = Buffer.concat([
      readFileSync(shimBase),
      Buffer.from(trailer({ type: t, fallback: `../bin/${t}` })),
    ]);
    writeFileSync(join(image, 'shim', t), shim, { mode: 0o755 });
  }
  const host = join(dir, 'host');
  mkdirSync(host);
  return { image, host };
}

/** Runs the installer with the image and host given; the host sees its bin dir at `host` too. */
function run(c: { image: string; host: string }, args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [installer, ...args], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      CNI_BIN_DIR: c.host,
      HOST_CNI_BIN_DIR: c.host,
      CNI_KIT_SOURCE_DIR: join(c.image, 'bin'),
      ...env,
    },
    encoding: 'utf8',
    timeout: 30_000,
  });
}

/** The trailer fields of a shim file (its last 4096 bytes, cut at the last marker). */
function trailerOf(file: string) {
  const bytes = readFileSync(file);
  const tail = bytes.subarray(Math.max(0, bytes.length - 4096)).toString('latin1');
  const at = tail.lastIndexOf('\n--cni-kit-shim--\n');
  const lines = tail.slice(at + '\n--cni-kit-shim--\n'.length).split('\n');
  expect(lines.at(-2)).toBe('--end--');
  return {
    base: bytes.subarray(0, bytes.length - (tail.length - at)),
    fields: Object.fromEntries(
      lines.slice(0, -2).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    ),
  };
}

/** Every file under a dir with its inode and mtime: what a run that changes nothing leaves equal. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const st = statSync(p);
        out[p.slice(dir.length)] = `${st.ino}:${st.mtimeMs}:${st.mode.toString(8)}`;
      }
    }
  };
  walk(dir);
  return out;
}

describe('install.mjs --mode=thick', () => {
  it('installs bundles under cni-kit/ and shims whose fallback is cni-kit/<type>, bundles pointing at the installed node', () => {
    const c = setup(['multus', 'whereabouts', 'bridge']);
    const r = run(c, ['--mode=thick', '--once'], { CNI_KIT_PLUGINS: 'multus whereabouts' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`installed ${c.host}/multus (shim, fallback cni-kit/multus)`);
    for (const t of ['multus', 'whereabouts']) {
      const shim = join(c.host, t);
      const { base, fields } = trailerOf(shim);
      expect(fields).toEqual({ type: t, fallback: `cni-kit/${t}`, version: VERSION });
      // The program part is byte for byte the image's shim, and still runs with the new trailer.
      expect(base.equals(readFileSync('/bin/true'))).toBe(true);
      expect(statSync(shim).mode & 0o777).toBe(0o755);
      expect(spawnSync(shim).status).toBe(0);
      // fallback= resolves, against the shim's directory, to the installed bundle.
      const fallback = resolve(dirname(shim), String(fields.fallback));
      const lines = readFileSync(fallback, 'utf8').split('\n');
      expect(lines[0]).toBe(`#!${join(c.host, 'cni-kit-node')}`);
      expect(lines[1]).toBe(`// cni-kit plugin ${t}`);
      expect(spawnSync(fallback, { encoding: 'utf8' }).stdout).toBe(`${t}\n`);
    }
    // Only the plugins asked for: the host's own bridge stays.
    expect(existsSync(join(c.host, 'bridge'))).toBe(false);
    expect(existsSync(join(c.host, 'cni-kit/bridge'))).toBe(false);
    expect(readFileSync(join(c.host, 'cni-kit/lib/heavy/index.cjs'), 'utf8')).toBe('module.exports = 1;\n');
    expect(existsSync(join(c.host, 'cni-kit/lib/heavy/stamp'))).toBe(false);
    expect(JSON.parse(readFileSync(join(c.host, 'cni-kit/package.json'), 'utf8'))).toEqual({
      type: 'commonjs',
    });
    // No temp file is left, and the exec-mode layout is not written.
    expect(readdirSync(c.host).sort()).toEqual(['cni-kit', 'cni-kit-node', 'multus', 'whereabouts']);
  });

  it('replaces a shim that is running by rename: new inode, the running one untouched ("text file busy")', async () => {
    const c = setup(['multus']);
    // The old shim on the host: a real program (sleep) with a trailer, running while we install.
    const old = join(c.host, 'multus');
    const oldBytes = Buffer.concat([
      readFileSync('/bin/sleep'),
      Buffer.from(trailer({ type: 'multus', fallback: 'x' })),
    ]);
    writeFileSync(old, oldBytes, { mode: 0o755 });
    const before = statSync(old).ino;
    const running = spawn(old, ['30'], { stdio: 'ignore' });
    children.push(running);
    await new Promise((res) => running.once('spawn', res));
    // Held open by another reader too.
    const fd = openSync(old, 'r');
    try {
      // What copying over it would hit: the kernel refuses to write a file that is being executed.
      expect(() => openSync(`/proc/${running.pid}/exe`, 'r+')).toThrow(/ETXTBSY/);
      const r = run(c, ['--mode=thick', '--once'], { CNI_KIT_PLUGINS: 'multus' });
      expect(r.status, r.stderr).toBe(0);
      expect(statSync(old).ino).not.toBe(before);
      expect(trailerOf(old).fields.fallback).toBe('cni-kit/multus');
      // The running program and the open descriptor still see the old file, whole.
      expect(running.exitCode).toBeNull();
      expect(readFileSync(`/proc/${running.pid}/exe`).equals(oldBytes)).toBe(true);
      const buf = Buffer.alloc(oldBytes.length);
      expect(readSync(fd, buf, 0, buf.length, 0)).toBe(oldBytes.length);
      expect(buf.equals(oldBytes)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  it('is idempotent: a second run rewrites nothing (same inodes), and says so', () => {
    const c = setup(['multus', 'whereabouts']);
    const env = { CNI_KIT_PLUGINS: 'multus whereabouts' };
    expect(run(c, ['--mode=thick', '--once'], env).status).toBe(0);
    const first = snapshot(c.host);
    const again = run(c, ['--mode=thick', '--once'], env);
    expect(again.status, again.stderr).toBe(0);
    expect(snapshot(c.host)).toEqual(first);
    expect(again.stdout).toContain(`unchanged ${c.host}/multus (shim`);
    expect(again.stdout).not.toMatch(/ installed .*(multus|whereabouts)/);
    // A new image (another shim build) is installed over it.
    const shim = join(c.image, 'shim/multus');
    writeFileSync(
      shim,
      Buffer.concat([
        readFileSync('/bin/sleep'),
        Buffer.from(trailer({ type: 'multus', fallback: '../bin/multus' })),
      ]),
    );
    expect(run(c, ['--mode=thick', '--once'], env).status).toBe(0);
    expect(trailerOf(join(c.host, 'multus')).base.equals(readFileSync('/bin/sleep'))).toBe(true);
    expect(`${statSync(join(c.host, 'whereabouts')).ino}`).toBe(first['/whereabouts']?.split(':')[0]);
  });

  it('CNI_KIT_SHIM_SOCKET bakes socket= into every shim; "all" installs every bundle of the image', () => {
    const c = setup(['bridge', 'macvlan']);
    writeFileSync(join(c.image, 'bin/README'), 'not a plugin\n');
    const r = run(c, ['--mode=thick', '--once'], {
      CNI_KIT_PLUGINS: 'all',
      CNI_KIT_SHIM_SOCKET: '/run/x/d.sock',
    });
    expect(r.status, r.stderr).toBe(0);
    for (const t of ['bridge', 'macvlan']) {
      expect(trailerOf(join(c.host, t)).fields).toEqual({
        type: t,
        fallback: `cni-kit/${t}`,
        version: VERSION,
        socket: '/run/x/d.sock',
      });
    }
    expect(existsSync(join(c.host, 'README'))).toBe(false);
  });

  it('a bad image or setting changes nothing on the host and names what is wrong', () => {
    const c = setup(['multus']);
    const missing = run(c, ['--mode=thick', '--once'], { CNI_KIT_PLUGINS: 'multus tuning' });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain(`${join(c.image, 'shim/tuning')}`);
    expect(missing.stderr).not.toContain('    at ');
    writeFileSync(join(c.image, 'shim/multus'), readFileSync('/bin/true'));
    const bare = run(c, ['--mode=thick', '--once'], { CNI_KIT_PLUGINS: 'multus' });
    expect(bare.status).toBe(2);
    expect(bare.stderr).toContain(`${join(c.image, 'shim/multus')} has no cni-kit shim trailer`);
    writeFileSync(
      join(c.image, 'shim/multus'),
      Buffer.concat([readFileSync('/bin/true'), Buffer.from(trailer({ type: 'tuning', fallback: 'x' }))]),
    );
    const wrong = run(c, ['--mode=thick', '--once'], { CNI_KIT_PLUGINS: 'multus' });
    expect(wrong.stderr).toContain('its trailer says type=tuning, not multus');
    const relative = run(c, ['--mode=thick', '--once'], {
      CNI_KIT_PLUGINS: 'multus',
      CNI_KIT_SHIM_SOCKET: 'd.sock',
    });
    expect(relative.stderr).toContain('CNI_KIT_SHIM_SOCKET is "d.sock"');
    expect(run(c, ['--mode=fat']).stderr).toContain('--mode (or CNI_KIT_MODE) is "fat"');
    expect(run(c, ['--once', '--config-only']).status).toBe(2);
    // Nothing but the (empty) bundle dir was made.
    expect(snapshot(c.host)).toEqual({});
  });

  it('property: any version line, socket and program bytes come through the rewrite exactly', () => {
    const line = fc.string({
      unit: fc.constantFrom(...'{}[]":,.-_ abcXYZ019\\/='.split('')),
      maxLength: 300,
    });
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 5000 }),
        line,
        fc.option(
          line.map((s) => `/run/${s.replace(/\s/g, '')}.sock`),
          { nil: undefined },
        ),
        (program, version, socket) => {
          const c = setup([]);
          writeFileSync(join(c.image, 'bin/p'), bundle('p'));
          // The program may itself contain the marker: the trailer is the last one.
          const base = Buffer.concat([Buffer.from(program), Buffer.from('\n--cni-kit-shim--\ntype=p\n')]);
          writeFileSync(
            join(c.image, 'shim/p'),
            Buffer.concat([base, Buffer.from(trailer({ type: 'p', fallback: 'f', version, socket }))]),
          );
          const r = run(c, ['--mode=thick', '--once'], { CNI_KIT_PLUGINS: 'p' });
          expect(r.status, r.stderr).toBe(0);
          const got = trailerOf(join(c.host, 'p'));
          expect(got.base.equals(base)).toBe(true);
          expect(got.fields).toEqual({
            type: 'p',
            fallback: 'cni-kit/p',
            version,
            ...(socket ? { socket } : {}),
          });
        },
      ),
      { numRuns: 12 },
    );
  });

  it('copies the 100 MB runtime without holding it in memory (the init container has a 128Mi limit)', () => {
    const c = setup(['multus']);
    const rss = join(c.host, '..', 'rss');
    const hook = join(c.host, '..', 'rss.cjs');
    writeFileSync(
      hook,
      `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(rss)}, String(process.resourceUsage().maxRSS)));\n`,
    );
    const r = spawnSync(process.execPath, ['--require', hook, installer, '--mode=thick', '--once'], {
      env: {
        PATH: '/usr/bin:/bin',
        CNI_BIN_DIR: c.host,
        CNI_KIT_SOURCE_DIR: join(c.image, 'bin'),
        CNI_KIT_PLUGINS: 'multus',
      },
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    expect(statSync(join(c.host, 'cni-kit-node')).size).toBe(statSync(process.execPath).size);
    // KiB; reading the runtime into a Buffer peaked at ~140 MiB.
    expect(Number(readFileSync(rss, 'utf8')) / 1024).toBeLessThan(100);
  });
});

describe('install.mjs in exec mode (deploy/daemonset.yaml) is unchanged', () => {
  it('installs the bundles at <bin>/<type> with lib/ beside them and no shim or cni-kit/ dir', () => {
    const c = setup(['multus']);
    const r = run(c, ['--once'], { CNI_KIT_PLUGINS: 'multus' });
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(c.host, 'multus'), 'utf8')).toBe(
      bundle('multus').replace('/usr/bin/env node', join(c.host, 'cni-kit-node')),
    );
    expect(existsSync(join(c.host, 'lib/heavy/index.cjs'))).toBe(true);
    expect(readdirSync(c.host).sort()).toEqual(['cni-kit-node', 'lib', 'multus', 'package.json']);
    // Switching to thick mode later replaces the bundle with the shim, by rename.
    const ino = statSync(join(c.host, 'multus')).ino;
    expect(run(c, ['--once'], { CNI_KIT_PLUGINS: 'multus', CNI_KIT_MODE: 'thick' }).status).toBe(0);
    expect(statSync(join(c.host, 'multus')).ino).not.toBe(ino);
    expect(trailerOf(join(c.host, 'multus')).fields.fallback).toBe('cni-kit/multus');
  });

  it('leaves no temp file behind when a write fails, and clears one an earlier killed run left', () => {
    const c = setup(['multus']);
    writeFileSync(join(c.host, '.multus.cni-kit-tmp-12345'), 'half a file');
    expect(run(c, ['--once'], { CNI_KIT_PLUGINS: 'multus' }).status).toBe(0);
    expect(readdirSync(c.host).filter((f) => f.includes('cni-kit-tmp'))).toEqual([]);
    // The source vanishes between the check and the copy: no half-written temp file stays.
    copyFileSync('/bin/true', join(c.image, 'bin/lib/heavy/tool'));
    rmSync(join(c.host, 'lib/heavy'), { recursive: true });
    mkdirSync(join(c.host, 'lib/heavy/tool'), { recursive: true });
    const r = run(c, ['--once'], { CNI_KIT_PLUGINS: 'multus' });
    expect(r.status).toBe(2);
    expect(readdirSync(join(c.host, 'lib/heavy')).filter((f) => f.includes('cni-kit-tmp'))).toEqual([]);
  });
});

describe('install.mjs --mode=thick with the real build (dist/bin, dist/shim)', () => {
  const shimBase = join(root, 'dist/shim/.cni-kit-shim');

  it('the installed shim answers VERSION itself and, with no daemon, runs the installed bundle through the installed node', (ctx) => {
    if (!existsSync(shimBase) || !existsSync(join(root, 'dist/shim/debug'))) {
      ctx.skip('dist/shim/ is not built (npm run build compiles the native shim)');
    }
    const host = join(work, 'real-host');
    mkdirSync(host);
    const r = run({ image: join(root, 'dist'), host }, ['--mode=thick', '--once'], {
      CNI_KIT_PLUGINS: 'debug',
      CNI_KIT_SOURCE_DIR: join(root, 'dist/bin'),
    });
    expect(r.status, r.stderr).toBe(0);
    const env = { PATH: '/usr/bin:/bin', CNI_KIT_DAEMON_SOCKET: join(work, 'no-daemon.sock') };
    const direct = spawnSync(join(host, 'cni-kit/debug'), {
      env: { ...env, CNI_COMMAND: 'VERSION' },
      encoding: 'utf8',
    });
    const viaShim = spawnSync(join(host, 'debug'), {
      env: { ...env, CNI_COMMAND: 'VERSION' },
      encoding: 'utf8',
    });
    expect(viaShim.status).toBe(0);
    expect(viaShim.stdout).toBe(direct.stdout);
    // ADD without its variables: the bundle's own error, by exec-mode fallback (no daemon listens).
    const add = { ...env, CNI_COMMAND: 'ADD' };
    const fallback = spawnSync(join(host, 'debug'), { env: add, input: '{}', encoding: 'utf8' });
    const bundleRun = spawnSync(join(host, 'cni-kit/debug'), { env: add, input: '{}', encoding: 'utf8' });
    expect(fallback.status).toBe(1);
    expect(JSON.parse(fallback.stdout)).toEqual(JSON.parse(bundleRun.stdout));
    expect(JSON.parse(fallback.stdout).code).toBe(4);
  });
});

describe("install.mjs --config-only (the thick DaemonSet's config sidecar)", () => {
  it("installs no file in the bin dir, writes the kubeconfigs and whereabouts' flat file, and stops on SIGTERM", async () => {
    const c = setup(['whereabouts']);
    const sa = join(c.host, '..', 'sa');
    const conf = join(c.host, '..', 'conf');
    mkdirSync(sa);
    writeFileSync(join(sa, 'ca.crt'), 'not a certificate');
    writeFileSync(join(sa, 'token'), 'token');
    const { code, out } = await runInstallerUntilWaiting(['--config-only'], {
      PATH: '/usr/bin:/bin',
      CNI_BIN_DIR: c.host,
      CNI_CONF_DIR: conf,
      HOST_CNI_CONF_DIR: conf,
      CNI_KIT_SOURCE_DIR: join(c.image, 'bin'),
      CNI_KIT_PLUGINS: 'all',
      SERVICE_ACCOUNT_DIR: sa,
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
    });
    expect(code, out).toBe(0);
    expect(readdirSync(c.host)).toEqual([]);
    expect(
      JSON.parse(readFileSync(join(conf, 'multus.d/multus.kubeconfig'), 'utf8')).users[0].user.token,
    ).toBe('token');
    expect(JSON.parse(readFileSync(join(conf, 'whereabouts.d/whereabouts.conf'), 'utf8')).datastore).toBe(
      'kubernetes',
    );
  });
});
