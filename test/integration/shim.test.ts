// The daemon-mode shim (native/cni-kit-shim.c) as a runtime runs it: VERSION from its trailer
// with no process and no socket; the request it sends a (fake) daemon, byte for byte; the replies
// it prints or turns into CNI errors; the exec-mode fallback when no daemon listens (absent or
// stale socket), with NODE_OPTIONS dropped and a watchdog; no fallback once connected; and
// `cni-kit build --shim` for an SDK user's plugin. The trailer functions of src/cli/shim.ts too.
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  compileShim,
  formatShimTrailer,
  installShim,
  parseShimTrailer,
  readShimTrailer,
  SHIM_MARK,
  stripShimTrailer,
} from '../../src/cli/shim.js';
import { type FakeDaemon, staleSocket, startFakeDaemon } from '../helpers/fake-daemon.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const SHIM_DIR = join(root, 'dist/shim');
const BASE = join(SHIM_DIR, '.cni-kit-shim');
const BIN = join(root, 'dist/bin');
const work = mkdtempSync(join(tmpdir(), `cnikit-shim-${process.pid}-`));
/** Children still running and process groups of fallback scripts: killed at the end, even after a failure. */
const running = new Set<import('node:child_process').ChildProcess>();
const groupFiles: string[] = [];
afterAll(() => {
  for (const c of running) c.kill('SIGKILL');
  for (const f of groupFiles) {
    try {
      process.kill(-Number(readFileSync(f, 'utf8')), 'SIGKILL');
    } catch {}
  }
  rmSync(work, { recursive: true, force: true });
});

beforeAll(() => {
  if (!existsSync(BASE)) {
    throw new Error(
      'dist/shim/.cni-kit-shim is missing: run node scripts/build-bins.mjs (it needs a C compiler)',
    );
  }
});

interface Run {
  stdout: string;
  stderr: string;
  status: number | null;
  signal: NodeJS.Signals | null;
  ms: number;
}

/** Runs a program with exactly `env` and `stdin`, without blocking the event loop (the fake daemon lives in it). */
function run(file: string, env: Record<string, string>, stdin: string | Buffer = '', args: string[] = []) {
  return new Promise<Run>((ok, fail) => {
    const t0 = performance.now();
    const child = spawn(file, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    running.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', fail);
    child.stdin.on('error', () => {}); // the shim may not read stdin (VERSION, fallback errors)
    child.stdin.end(stdin);
    child.on('close', (status, signal) => {
      running.delete(child);
      ok({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        status,
        signal,
        ms: performance.now() - t0,
      });
    });
  });
}

/** stdout carries the answer and nothing else: empty, or exactly one JSON document. */
function answer(r: Run): Record<string, unknown> | undefined {
  if (r.stdout === '') return undefined;
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

function cniError(r: Run, code: number): string {
  expect(r.status, r.stdout + r.stderr).toBe(1);
  const a = answer(r)!;
  expect(a).toMatchObject({ code, cniVersion: expect.any(String) });
  expect(typeof a.msg).toBe('string');
  return a.msg as string;
}

let seq = 0;
/** A shim for `type` in a fresh dir of `work`, its fallback `fallback` (relative to that dir or absolute). */
function shim(type: string, fallback: string, socket?: string): string {
  const dir = join(work, `s${++seq}`);
  mkdirSync(dir);
  const file = join(dir, type);
  installShim({
    base: BASE,
    outfile: file,
    type,
    fallback,
    versionLine: '{"cniVersion":"1.1.0","supportedVersions":["1.1.0"]}',
    socket,
  });
  return file;
}

/** The process group of /proc/<pid> (-1 if gone). */
function procGroup(pid: string): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return -1;
  }
}
function isZombie(pid: string): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** A fallback program written as a shell script. */
function script(name: string, body: string): string {
  const file = join(work, `${name}-${++seq}.sh`);
  writeFileSync(file, `#!/bin/sh\n${body}\n`);
  chmodSync(file, 0o755);
  return file;
}

const PATH = process.env.PATH ?? '/usr/bin:/bin';
const env = (command: string, extra: Record<string, string> = {}) => ({
  PATH,
  CNI_COMMAND: command,
  CNI_CONTAINERID: 'ctr1',
  CNI_NETNS: '/var/run/netns/none',
  CNI_IFNAME: 'eth0',
  CNI_PATH: BIN,
  ...extra,
});

describe('shim VERSION', () => {
  it('every dist/shim/<type> answers VERSION byte-equal to its Node bundle', async () => {
    const types = readdirSync(SHIM_DIR).filter((f) => !f.startsWith('.'));
    expect(types.length).toBeGreaterThan(5);
    for (const type of types) {
      expect(readShimTrailer(join(SHIM_DIR, type))).toMatchObject({ type, fallback: `../bin/${type}` });
      const viaShim = await run(join(SHIM_DIR, type), { PATH, CNI_COMMAND: 'VERSION' });
      const viaNode = await run(join(BIN, type), { PATH, CNI_COMMAND: 'VERSION' });
      expect(viaNode.status).toBe(0);
      expect(viaShim.status).toBe(0);
      expect(viaShim.stdout).toBe(viaNode.stdout);
    }
  });

  it('execs nothing and opens no socket (strace), even with a daemon listening', async () => {
    const d = await startFakeDaemon();
    try {
      const log = join(work, 'strace.log');
      const r = await run('strace', { PATH, CNI_COMMAND: 'VERSION', CNI_KIT_DAEMON_SOCKET: d.socket }, '', [
        '-f',
        '-qq',
        '-e',
        'trace=execve,socket,connect,clone,clone3,fork,vfork',
        '-o',
        log,
        join(SHIM_DIR, 'debug'),
      ]);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(
        readFileSync(join(SHIM_DIR, 'debug')).toString('utf8').split('version=').pop()!.split('\n')[0] + '\n',
      );
      const calls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
      expect(calls.filter((l) => /\bexecve\(/.test(l))).toHaveLength(1);
      expect(calls.filter((l) => /\b(socket|connect|clone3?|v?fork)\(/.test(l))).toEqual([]);
      expect(d.requests).toEqual([]);
    } finally {
      await d.close();
    }
  });

  it('logs the median wall time of 20 VERSION calls', async () => {
    const times: number[] = [];
    for (let i = 0; i < 20; i++)
      times.push((await run(join(SHIM_DIR, 'bridge'), { CNI_COMMAND: 'VERSION' })).ms);
    times.sort((a, b) => a - b);
    console.log(
      `shim VERSION: median ${((times[9]! + times[10]!) / 2).toFixed(2)} ms wall over 20 calls (spawned from Node)`,
    );
    expect(times).toHaveLength(20);
  });

  it('without a trailer (the base binary) answers code 999 naming the file and cni-kit build --shim', async () => {
    const r = await run(BASE, env('ADD'), '{"cniVersion":"0.4.0"}');
    const msg = cniError(r, 999);
    expect(msg).toContain(BASE);
    expect(msg).toContain('cni-kit build');
    expect(msg).toContain('--shim');
  });
});

describe('shim → daemon', () => {
  let d: FakeDaemon;
  beforeAll(async () => {
    d = await startFakeDaemon();
  });
  afterAll(async () => {
    await d.close();
  });
  afterEach(() => {
    d.requests.length = 0;
  });

  it('sends one POST /cni with the headers, the whole environment and stdin in base64', async () => {
    const file = shim('debug', join(BIN, 'debug'));
    d.answer({ status: 200, body: '{"cniVersion":"1.0.0"}' });
    const e = env('ADD', { CNI_KIT_DAEMON_SOCKET: d.socket, ODD: 'a "quoted" \\ value\n\t\u0001é😀' });
    const stdin = '{"cniVersion":"1.0.0","name":"n","type":"debug"}';
    const r = await run(file, e, stdin);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('{"cniVersion":"1.0.0"}');
    expect(d.requests).toHaveLength(1);
    const q = d.requests[0]!;
    expect(q.method).toBe('POST');
    expect(q.url).toBe('/cni');
    expect(q.headers).toMatchObject({
      host: 'cni-kit',
      'content-type': 'application/json',
      'content-length': String(q.body.length),
      'x-cni-kit-shim': '1',
      'x-cni-kit-plugin': 'debug',
      connection: 'close',
    });
    const body = JSON.parse(q.body.toString('utf8')) as { env: Record<string, string>; config: string };
    expect(Object.keys(body).sort()).toEqual(['config', 'env']);
    expect(body.env).toEqual(e);
    expect(Buffer.from(body.config, 'base64').toString('utf8')).toBe(stdin);
  });

  it('round-trips any environment value and any stdin bytes exactly (property)', async () => {
    const file = shim('debug', join(BIN, 'debug'));
    d.answer({ status: 200, body: '' });
    const char = fc.oneof(
      fc.constantFrom(
        '"',
        '\\',
        '\n',
        '\r',
        '\t',
        '\u0001',
        '\u001f',
        '\u007f',
        '\u2028',
        'é',
        '€',
        '😀',
        '/',
      ),
      fc
        .integer({ min: 1, max: 0x10ffff })
        .filter((c) => c < 0xd800 || c > 0xdfff)
        .map((c) => String.fromCodePoint(c)),
    );
    const value = fc.string({ unit: char, maxLength: 40 });
    const stdin = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.uint8Array({ minLength: 1000, maxLength: 65536 }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.dictionary(fc.stringMatching(/^X_[A-Z0-9_]{1,12}$/), value, { maxKeys: 6 }),
        value,
        stdin,
        async (extra, weird, bytes) => {
          d.requests.length = 0;
          const e = env('DEL', { ...extra, 'WEIRD"KEY\\é': weird, CNI_KIT_DAEMON_SOCKET: d.socket });
          const r = await run(file, e, Buffer.from(bytes));
          expect(r.status).toBe(0);
          expect(r.stdout).toBe('');
          expect(d.requests).toHaveLength(1);
          const body = JSON.parse(d.requests[0]!.body.toString('utf8')) as { env: unknown; config: string };
          expect(body.env).toEqual(e);
          expect(Buffer.from(body.config, 'base64').equals(Buffer.from(bytes))).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('prints 200 / 400 / 413 / 503 bodies verbatim, exiting 0 only for 200', async () => {
    const file = shim('debug', join(BIN, 'debug'));
    const e = env('ADD', { CNI_KIT_DAEMON_SOCKET: d.socket });
    const cases: [number, string, number][] = [
      [200, '{ "cniVersion" : "1.0.0",\n  "ips": [ ] }\n', 0],
      [400, '{"cniVersion":"1.0.0","code":7,"msg":"bad field"}', 1],
      [413, '{"code":6,"msg":"request too large"}', 1],
      [503, '{"code":11,"msg":"overloaded"}', 1],
      [500, '{"code":999,"msg":"boom"}', 1],
    ];
    for (const [status, body, exit] of cases) {
      d.answer({ status, body });
      const r = await run(file, e, '{"cniVersion":"1.0.0"}');
      expect(r.stdout, `HTTP ${status}`).toBe(body);
      expect(r.status, `HTTP ${status}`).toBe(exit);
      answer(r);
    }
    d.answer({ status: 200, body: '' });
    const empty = await run(file, env('DEL', { CNI_KIT_DAEMON_SOCKET: d.socket }), '{}');
    expect(empty).toMatchObject({ status: 0, stdout: '' });
  });

  it('prints a 413 sent before the daemon read the body (the shim still writing)', async () => {
    const file = shim('debug', join(BIN, 'debug'));
    d.answer({ status: 413, body: '{"code":6,"msg":"too large"}', readBody: false });
    const r = await run(file, env('ADD', { CNI_KIT_DAEMON_SOCKET: d.socket }), Buffer.alloc(4 << 20, 0x41));
    expect(r.stdout).toBe('{"code":6,"msg":"too large"}');
    expect(r.status).toBe(1);
  });

  it('turns a non-JSON error status, a bad status line and a chunked reply into code 11', async () => {
    const file = shim('debug', join(BIN, 'debug'));
    const e = env('ADD', { CNI_KIT_DAEMON_SOCKET: d.socket });
    const stdin = '{"cniVersion":"0.4.0","name":"n"}';
    d.answer({ status: 502, body: 'Bad Gateway' });
    let r = await run(file, e, stdin);
    expect(cniError(r, 11)).toContain(d.socket);
    expect(answer(r)?.cniVersion).toBe('0.4.0');
    d.answer({ raw: 'SPDY/3 200 OK\r\n\r\n{}' });
    r = await run(file, e, stdin);
    expect(cniError(r, 11)).toContain(d.socket);
    d.answer({ raw: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n' });
    r = await run(file, e, stdin);
    expect(cniError(r, 11)).toContain(d.socket);
  });

  it('honours Content-Length: stops there while the connection stays open, ignores bytes after it', async () => {
    const file = shim('debug', join(BIN, 'debug'));
    const e = env('ADD', { CNI_KIT_DAEMON_SOCKET: d.socket, CNI_KIT_EXEC_TIMEOUT_MS: '5000' });
    d.answer({ raw: 'HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\n{"cniVersion":"1.0.0"}', keepOpen: true });
    const r = await run(file, e, '{}');
    expect(r).toMatchObject({ status: 0, stdout: '{"cniVersion":"1.0.0"}' });
    expect(r.ms).toBeLessThan(2500);
    d.answer({ raw: 'HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\n\r\n{"code":7}\ntrailing junk' });
    expect(await run(file, e, '{}')).toMatchObject({ status: 1, stdout: '{"code":7}\n' });
  });

  it('a reply without Content-Length is read to EOF', async () => {
    const file = shim('debug', join(BIN, 'debug'));
    d.answer({ raw: 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"cniVersion":"1.0.0"}' });
    const r = await run(file, env('ADD', { CNI_KIT_DAEMON_SOCKET: d.socket }), '{}');
    expect(r).toMatchObject({ status: 0, stdout: '{"cniVersion":"1.0.0"}' });
  });

  it('a daemon that dies mid-call: code 11 naming the socket, and no exec-mode fallback', async () => {
    const marker = join(work, `fallback-ran-${++seq}`);
    const file = shim('debug', script('marker', `touch ${marker}; echo '{}'`));
    const e = env('ADD', { CNI_KIT_DAEMON_SOCKET: d.socket });
    const stdin = '{"cniVersion":"1.0.0","name":"n"}';
    for (const a of [
      { destroy: true as const },
      { raw: 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{"cniVersion":"1.0.0",' },
      { raw: 'HTTP/1.1 200 OK\r\nContent-Le' },
    ]) {
      d.answer(a);
      const r = await run(file, e, stdin);
      const msg = cniError(r, 11);
      expect(msg).toContain(d.socket);
      expect(answer(r)?.cniVersion).toBe('1.0.0');
      expect(existsSync(marker)).toBe(false);
    }
    expect(d.requests).toHaveLength(3);
  });

  it('a daemon that never answers: code 11 after CNI_KIT_EXEC_TIMEOUT_MS', async () => {
    const file = shim('debug', join(BIN, 'debug'));
    d.answer({ hang: true });
    const r = await run(
      file,
      env('ADD', { CNI_KIT_DAEMON_SOCKET: d.socket, CNI_KIT_EXEC_TIMEOUT_MS: '400' }),
      '{}',
    );
    expect(cniError(r, 11)).toContain(d.socket);
    expect(r.ms).toBeGreaterThanOrEqual(350);
    expect(r.ms).toBeLessThan(5000);
  });

  it('takes the socket from the trailer when CNI_KIT_DAEMON_SOCKET is unset', async () => {
    const file = shim('debug', join(BIN, 'debug'), d.socket);
    d.answer({ status: 200, body: '{"ok":1}' });
    const r = await run(file, env('ADD'), '{}');
    expect(r).toMatchObject({ status: 0, stdout: '{"ok":1}' });
    expect(d.requests).toHaveLength(1);
  });
});

describe('shim exec-mode fallback', () => {
  const hlConf = (dataDir: string) =>
    JSON.stringify({
      cniVersion: '1.0.0',
      name: 'shimnet',
      type: 'host-local',
      ipam: { type: 'host-local', subnet: '10.77.0.0/24', dataDir },
    });

  async function sameAsDirect(socket: string, extra: Record<string, string> = {}) {
    const viaShim = join(work, `hl-shim-${++seq}`);
    const direct = join(work, `hl-direct-${seq}`);
    const file = shim('host-local', join(BIN, 'host-local'));
    const r = await run(file, env('ADD', { CNI_KIT_DAEMON_SOCKET: socket, ...extra }), hlConf(viaShim));
    const want = await run(join(BIN, 'host-local'), env('ADD'), hlConf(direct));
    expect(want.status).toBe(0);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(answer(r)).toEqual(answer(want));
    expect(answer(r)).toMatchObject({ ips: [{ address: '10.77.0.2/24' }] });
    // A direct exec costs what the fallback costs: the shim adds no wait before it.
    expect(r.ms).toBeLessThan(Math.max(1000, want.ms + 1000));
    return r;
  }

  it('runs the Node bundle when the socket does not exist, with the same result as a direct exec', async () => {
    await sameAsDirect(join(work, 'no-such.sock'));
  });

  it('falls back at once on a stale socket (the file stays, nobody listens)', async () => {
    const dir = join(work, `stale-${++seq}`);
    mkdirSync(dir);
    const sock = await staleSocket(dir);
    expect(statSync(sock).isSocket()).toBe(true);
    await sameAsDirect(sock);
  });

  it('falls back when the socket path is too long for a Unix socket', async () => {
    await sameAsDirect(`/${'x'.repeat(200)}.sock`);
  });

  it('drops NODE_OPTIONS and NODE_EXTRA_CA_CERTS from the bundle environment', async () => {
    await sameAsDirect(join(work, 'no-such.sock'), {
      NODE_OPTIONS: '--require=/nonexistent',
      NODE_EXTRA_CA_CERTS: '/nonexistent.pem',
    });
    const file = shim(
      'debug',
      script(
        'env',
        `echo "{\\"o\\":\\"\${NODE_OPTIONS-unset}\\",\\"c\\":\\"\${NODE_EXTRA_CA_CERTS-unset}\\",\\"k\\":\\"$KEEP\\"}"`,
      ),
    );
    const r = await run(
      file,
      env('ADD', {
        NODE_OPTIONS: '--x',
        NODE_EXTRA_CA_CERTS: '/y',
        KEEP: 'kept',
        CNI_KIT_DAEMON_SOCKET: '/nonexistent.sock',
      }),
      '{}',
    );
    expect(r.status).toBe(0);
    expect(answer(r)).toEqual({ o: 'unset', c: 'unset', k: 'kept' });
  });

  it('resolves a relative fallback against the shim file directory, whatever the cwd', async () => {
    const dir = join(work, `rel-${++seq}`);
    mkdirSync(join(dir, 'bundles'), { recursive: true });
    writeFileSync(join(dir, 'bundles/p'), '#!/bin/sh\ncat >/dev/null; echo \'{"relative":true}\'\n', {
      mode: 0o755,
    });
    const file = join(dir, 'p');
    installShim({ base: BASE, outfile: file, type: 'p', fallback: 'bundles/p', versionLine: '{}' });
    const r = await run(file, env('ADD', { CNI_KIT_DAEMON_SOCKET: '/nonexistent.sock' }), '{}');
    expect(r).toMatchObject({ status: 0, stdout: '{"relative":true}\n' });
  });

  it('passes a failing bundle answer on with exit 1; no output is code 999; a signal is code 11', async () => {
    const e = env('ADD', { CNI_KIT_DAEMON_SOCKET: '/nonexistent.sock' });
    let r = await run(shim('debug', script('fail', `echo '{"code":7,"msg":"bad"}'; exit 3`)), e, '{}');
    expect(r).toMatchObject({ status: 1, stdout: '{"code":7,"msg":"bad"}\n' });
    const silent = script('silent', 'exit 4');
    r = await run(shim('debug', silent), e, '{}');
    expect(cniError(r, 999)).toContain(silent);
    expect(cniError(r, 999)).toContain('4');
    r = await run(shim('debug', script('sig', `echo '{"partial":'; kill -KILL $$`)), e, '{}');
    expect(cniError(r, 11)).toContain('signal 9');
  });

  it('a shim killed by the runtime takes its exec-mode bundle with it (SIGTERM via the parent-death signal)', async () => {
    const pidFile = join(work, `orphan-${++seq}.pid`);
    groupFiles.push(pidFile);
    const file = shim('debug', script('orphan', `echo $$ > ${pidFile}; exec sleep 1000`));
    const p = run(file, env('ADD', { CNI_KIT_DAEMON_SOCKET: '/nonexistent.sock' }), '{}');
    for (let i = 0; i < 100 && !existsSync(pidFile); i++) await new Promise((ok) => setTimeout(ok, 20));
    const pid = Number(readFileSync(pidFile, 'utf8'));
    for (const c of running) c.kill('SIGKILL');
    expect((await p).signal).toBe('SIGKILL');
    const alive = () => procGroup(String(pid)) !== -1 && !isZombie(String(pid));
    for (let i = 0; i < 100 && alive(); i++) await new Promise((ok) => setTimeout(ok, 20));
    expect(alive()).toBe(false);
  });

  it("a bundle that cannot be exec'd: code 11 naming the bundle and the unreachable socket", async () => {
    const missing = join(work, 'missing-bundle');
    const r = await run(
      shim('debug', missing),
      env('ADD', { CNI_KIT_DAEMON_SOCKET: '/nonexistent.sock' }),
      '{}',
    );
    const msg = cniError(r, 11);
    expect(msg).toContain(missing);
    expect(msg).toContain('/nonexistent.sock');
  });

  it.each([
    ['exits on SIGTERM', '', '1500', 1400, 4000],
    ['ignores SIGTERM (SIGKILL 2 s later)', "trap '' TERM; ", '500', 2400, 5000],
  ])(
    'the watchdog kills a hung bundle that %s and its process group: code 11',
    async (_, trap, ms, min, max) => {
      const pidFile = join(work, `hung-${++seq}.pid`);
      groupFiles.push(pidFile);
      const file = shim('debug', script('hang', `${trap}echo $$ > ${pidFile}; sleep 1000`));
      const r = await run(
        file,
        env('ADD', { CNI_KIT_DAEMON_SOCKET: '/nonexistent.sock', CNI_KIT_EXEC_TIMEOUT_MS: ms }),
        '{}',
      );
      const msg = cniError(r, 11);
      expect(msg).toContain(`${ms} ms`);
      expect(r.ms).toBeGreaterThanOrEqual(min);
      expect(r.ms).toBeLessThan(max);
      const pgid = Number(readFileSync(pidFile, 'utf8'));
      expect(pgid).toBeGreaterThan(1);
      // Killed members may stay zombies for a moment until their reaper collects them.
      const alive = () => {
        try {
          process.kill(-pgid, 0);
          return readdirSync('/proc').some((p) => /^\d+$/.test(p) && procGroup(p) === pgid && !isZombie(p));
        } catch {
          return false;
        }
      };
      for (let i = 0; i < 100 && alive(); i++) await new Promise((ok) => setTimeout(ok, 20));
      expect(alive()).toBe(false);
    },
  );
});

describe('shim trailer (src/cli/shim.ts)', () => {
  it('the base binary carries no trailer and no marker', () => {
    const base = readFileSync(BASE);
    expect(base.includes(SHIM_MARK)).toBe(false);
    expect(readShimTrailer(BASE)).toBeUndefined();
    expect(stripShimTrailer(base).equals(base)).toBe(true);
  });

  it('installing over an installed shim replaces its trailer atomically (new inode, the old file intact)', async () => {
    const file = shim('one', '/a/one');
    const before = statSync(file).ino;
    const oldBytes = readFileSync(file);
    installShim({
      base: file,
      outfile: file,
      type: 'two',
      fallback: 'cni-kit/two',
      versionLine: '{"v":2}\n',
      socket: '/s',
    });
    expect(statSync(file).ino).not.toBe(before);
    expect(readShimTrailer(file)).toEqual({
      type: 'two',
      fallback: 'cni-kit/two',
      version: '{"v":2}',
      socket: '/s',
    });
    expect(readFileSync(file).length).toBe(
      stripShimTrailer(oldBytes).length +
        formatShimTrailer({ type: 'two', fallback: 'cni-kit/two', version: '{"v":2}', socket: '/s' }).length,
    );
    const r = await run(file, { CNI_COMMAND: 'VERSION' });
    expect(r).toMatchObject({ status: 0, stdout: '{"v":2}\n' });
    // Installing over a shim that is running (no "text file busy"); the running one finishes.
    const slow = shim('slow', script('slow', `cat >/dev/null; sleep 0.3; echo '{"slow":1}'`));
    const running = run(slow, env('ADD', { CNI_KIT_DAEMON_SOCKET: '/nonexistent.sock' }), '{}');
    await new Promise((ok) => setTimeout(ok, 100));
    installShim({ base: BASE, outfile: slow, type: 'slow', fallback: '/x', versionLine: '{}' });
    expect(await running).toMatchObject({ status: 0, stdout: '{"slow":1}\n' });
    expect(readdirSync(join(file, '..'))).toEqual(['one']);
  });

  it('round-trips any field values the line format can carry, and refuses the rest (property)', () => {
    const line = fc.string({ minLength: 1, maxLength: 300 }).filter((s) => !/[\n\0]/.test(s));
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9._-]{1,30}$/),
        line,
        line,
        fc.option(line, { nil: undefined }),
        (type, fallback, version, socket) => {
          const t = { type, fallback, version, ...(socket !== undefined ? { socket } : {}) };
          const bytes = Buffer.concat([Buffer.from('ELF...\n'), formatShimTrailer(t)]);
          expect(parseShimTrailer(bytes)).toEqual(t);
        },
      ),
    );
    expect(() => formatShimTrailer({ type: 'a', fallback: 'x\ny', version: '{}' })).toThrow(/fallback/);
    expect(() => formatShimTrailer({ type: 'a/b', fallback: 'x', version: '{}' })).toThrow(/type/);
    expect(() => formatShimTrailer({ type: 'a', fallback: 'x', version: 'v'.repeat(5000) })).toThrow(/4096/);
  });
});

describe('compiling the shim', () => {
  it('falls back to a dynamic link with a warning when static linking fails', async () => {
    const cc = script(
      'cc-nostatic',
      'for a in "$@"; do [ "$a" = -static ] && { echo "cannot find -lc" >&2; exit 1; }; done\nexec cc "$@"',
    );
    const built = compileShim({ cc });
    expect(built.static).toBe(false);
    expect(built.warning).toMatch(/statically \(cannot find -lc\).*dynamically/);
    const file = shim('dyn', '/nonexistent');
    installShim({ base: built.bytes, outfile: file, type: 'dyn', fallback: '/x', versionLine: '{"dyn":1}' });
    expect(await run(file, { CNI_COMMAND: 'VERSION' })).toMatchObject({ status: 0, stdout: '{"dyn":1}\n' });
  });

  it('names the compiler and what to install when there is none', () => {
    expect(() => compileShim({ cc: '/nonexistent/cc' })).toThrow(
      /\/nonexistent\/cc.*install a C compiler.*set CC/,
    );
  });
});

describe('cni-kit build --shim', () => {
  const cli = join(root, 'dist/cli.cjs');
  it('writes a shim beside the bundle whose VERSION and fallback are the plugin', async (ctx) => {
    if (!existsSync(cli)) ctx.skip('dist/cli.cjs is not built: run npm run build (npm test does)');
    const dir = join(work, `sdk-${++seq}`);
    mkdirSync(dir);
    writeFileSync(
      join(dir, 'hello.ts'),
      `import { conf, pluginMain } from 'cni-kit';
pluginMain({
  supportedVersions: ['0.4.0', '1.0.0'],
  config: conf.object({ address: conf.cidr().default('10.0.0.2/24') }),
  add: (ctx) => ({ interfaces: [{ name: ctx.ifname }], ips: [{ interface: 0, address: ctx.conf.address }] }),
  del: () => {},
});
`,
    );
    const b = spawnSync(
      process.execPath,
      [
        cli,
        'build',
        '--cni-kit-source',
        join(root, 'src'),
        'hello.ts',
        '-o',
        join(dir, 'bundle/hello'),
        '--shim',
        join(dir, 'hello'),
      ],
      { cwd: dir, encoding: 'utf8', timeout: 120_000 },
    );
    expect(b.stderr).toBe('');
    expect(b.status).toBe(0);
    expect(b.stdout).toContain(`shim ${join(dir, 'hello')}`);
    const file = join(dir, 'hello');
    expect(readShimTrailer(file)).toMatchObject({ type: 'hello', fallback: 'bundle/hello' });
    const v = await run(file, { CNI_COMMAND: 'VERSION' });
    const vNode = await run(join(dir, 'bundle/hello'), { PATH, CNI_COMMAND: 'VERSION' });
    expect(v.stdout).toBe(vNode.stdout);
    expect(JSON.parse(v.stdout).supportedVersions).toEqual(['0.4.0', '1.0.0']);
    const stdin = JSON.stringify({ cniVersion: '0.4.0', name: 'n', type: 'hello' });
    const e = {
      ...env('ADD'),
      CNI_NETNS: '/proc/self/ns/net',
      CNI_KIT_DAEMON_SOCKET: join(dir, 'none.sock'),
    };
    const add = await run(file, e, stdin);
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(answer(add)).toEqual(answer(await run(join(dir, 'bundle/hello'), e, stdin)));
    expect(answer(add)).toMatchObject({ cniVersion: '0.4.0', ips: [{ address: '10.0.0.2/24' }] });
  });
});
