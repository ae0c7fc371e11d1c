// The daemon in-process (startDaemon from cni-kit/daemon) with small test plugins (hostedPlugin
// from cni-kit) whose handlers wait on promises the test controls, talked to over HTTP on a Unix
// socket in a private temp folder, as cni-kit's shim and an unmodified multus-shim talk to it:
// ordering (serialised per container and interface, nested calls bypassing lock and limiter),
// bounds (concurrency, queue, request size, call timeout), cancellation, refusals of malformed
// requests, shutdown, socket permissions, stdout hygiene, logs, metrics and multus-shim replies.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniError, hostedPlugin, type PluginContext, type PluginSpec } from 'cni-kit';
import { type Daemon, type DaemonOptions, jsonLogger, startDaemon } from 'cni-kit/daemon';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

// --- controllable handlers -------------------------------------------------------------------

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}
const deferred = (): Deferred => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
};

/** What the handlers did, in order: "start <id>", "end <id>", "abort <id>". */
let events: string[] = [];
/** Gates the handlers wait on, by the call's TEST_ID; created on first use by either side. */
let gates = new Map<string, Deferred>();
const gate = (id: string): Deferred => {
  let g = gates.get(id);
  if (!g) {
    g = deferred();
    gates.set(id, g);
  }
  return g;
};
const open = (id: string) => gate(id).resolve();
/** What a handler does on abort, by TEST_ID: throw its own error, or ignore it. */
let onAbort = new Map<string, 'throw' | 'ignore'>();

async function waitFor(cond: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; events: ${events.join(', ')}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The handler of every test plugin: record, wait on the gate (or the signal), answer. */
async function held(ctx: PluginContext): Promise<void> {
  const id = ctx.env.TEST_ID ?? `${ctx.command} ${ctx.containerId} ${ctx.ifname}`;
  events.push(`start ${id}`);
  try {
    const g = gate(id);
    const aborted = new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve();
      ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await Promise.race([g.promise, aborted]);
    if (ctx.signal.aborted) {
      events.push(`abort ${id}`);
      const how = onAbort.get(id) ?? 'throw';
      if (how === 'throw') throw new CniError(102, `${id}: cancelled, rolled back`);
      await g.promise;
    }
  } finally {
    events.push(`end ${id}`);
  }
}

const testPlugin: PluginSpec = {
  add: async (ctx) => {
    await held(ctx);
    if (ctx.env.TEST_FAIL) throw new CniError(Number(ctx.env.TEST_FAIL), `${ctx.ifname}: refused on purpose`);
    return { interfaces: [{ name: ctx.ifname }], ips: [{ interface: 0, address: '10.9.8.7/24' }] };
  },
  del: async (ctx) => {
    await held(ctx);
  },
  check: async (ctx) => {
    await held(ctx);
  },
};

// --- daemon and HTTP helpers -----------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), 'daemon-it-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let folders = 0;
/** A private folder (mkdtemp makes it 0700) for one daemon's socket. */
const privateDir = () => mkdtempSync(join(work, `d${folders++}-`));

const daemons: Daemon[] = [];
let logLines: string[] = [];

async function start(opts: Partial<DaemonOptions> = {}): Promise<{ d: Daemon; socket: string }> {
  const socket = opts.socket ?? join(privateDir(), 'run', 'daemon.sock');
  const d = await startDaemon({
    plugins: { test: hostedPlugin(testPlugin), child: hostedPlugin(testPlugin) },
    shutdownTimeoutMs: 3000,
    logger: jsonLogger('debug', (l) => logLines.push(l)),
    ...opts,
    socket,
  });
  daemons.push(d);
  return { d, socket };
}

afterEach(async () => {
  for (const g of gates.values()) g.resolve();
  await Promise.all(daemons.splice(0).map((d) => d.close()));
  events = [];
  gates = new Map();
  onAbort = new Map();
  logLines = [];
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function http(
  socket: string,
  opts: { method?: string; path?: string; body?: string | Buffer; headers?: Record<string, string> } = {},
  onRequest?: (req: ReturnType<typeof request>) => void,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : Buffer.from(opts.body);
    const req = request(
      {
        socketPath: socket,
        path: opts.path ?? '/cni',
        method: opts.method ?? 'POST',
        agent: false,
        headers: {
          Host: 'cni-kit',
          ...(body ? { 'Content-Type': 'application/json', 'Content-Length': String(body.length) } : {}),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    onRequest?.(req);
    req.end(body);
  });
}

const baseEnv = (command: string, id: string, ifname = 'eth0', containerId = 'c1') => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: containerId,
  CNI_NETNS: '/var/run/netns/test',
  CNI_IFNAME: ifname,
  CNI_PATH: '/opt/cni/bin',
  TEST_ID: id,
});
const netconf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.1.0',
  name: 'net1',
  type: 'test',
  ...extra,
});

/** A call as cni-kit's shim sends it. */
function cni(
  socket: string,
  env: Record<string, string>,
  conf: unknown = netconf(),
  headers: Record<string, string> = { 'X-Cni-Kit-Shim': '1' },
): Promise<Reply> {
  return http(socket, {
    body: JSON.stringify({ env, config: Buffer.from(JSON.stringify(conf)).toString('base64') }),
    headers,
  });
}

const started = (id: string) => events.includes(`start ${id}`);

/** An ADD whose caller can leave (close the connection) at a moment of the test's choosing. */
function leaving(socket: string, id: string, ifname: string) {
  let client: ReturnType<typeof request> | undefined;
  const p = http(
    socket,
    {
      body: JSON.stringify({
        env: baseEnv('ADD', id, ifname),
        config: Buffer.from(JSON.stringify(netconf())).toString('base64'),
      }),
      headers: { 'X-Cni-Kit-Shim': '1' },
    },
    (req) => {
      client = req;
    },
  ).catch((e: Error) => e);
  return { p, leave: () => client?.destroy() };
}

// --- the tests -------------------------------------------------------------------------------

describe('daemon ordering', () => {
  it('serialises calls for one container and interface (the second starts after the first ends); another interface runs alongside', async () => {
    const { socket } = await start();
    const a = cni(socket, baseEnv('ADD', 'a'));
    await waitFor(() => started('a'), 'a to start');
    const b = cni(socket, baseEnv('DEL', 'b'));
    const c = cni(socket, baseEnv('ADD', 'c', 'net1'));
    await waitFor(() => started('c'), 'c (other ifname) to start while a runs');
    await sleep(100);
    expect(started('b')).toBe(false);
    open('c');
    expect((await c).status).toBe(200);
    expect(started('b')).toBe(false);
    open('a');
    open('b');
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.status).toBe(200);
    expect(rb).toMatchObject({ status: 200, body: '' });
    expect(events.indexOf('start b')).toBeGreaterThan(events.indexOf('end a'));
  });

  it('a nested call (delegation chain set) for the same container and interface bypasses lock and limiter: no deadlock', async () => {
    let nested: Reply | undefined;
    let socket = '';
    const parent: PluginSpec = {
      add: async () => {
        events.push('parent start');
        // The parent holds the lock of c1/eth0 and the only slot; its delegate comes back through
        // the socket for the same container and interface, as a shim'd IPAM or multus delegate does.
        nested = await cni(
          socket,
          { ...baseEnv('ADD', 'nested'), CNI_KIT_DELEGATION_CHAIN: 'parent ADD' },
          netconf({ type: 'child' }),
        );
        const r = JSON.parse(nested.body);
        events.push('parent end');
        return { interfaces: r.interfaces, ips: r.ips };
      },
    };
    const started2 = await start({
      plugins: { parent: hostedPlugin(parent), child: hostedPlugin(testPlugin) },
      maxConcurrentCalls: 1,
      maxQueuedCalls: 0,
    });
    socket = started2.socket;
    open('nested');
    const r = await Promise.race([
      cni(socket, baseEnv('ADD', 'p'), netconf({ type: 'parent' })),
      sleep(5000).then(() => 'deadlock' as const),
    ]);
    expect(r).not.toBe('deadlock');
    expect((r as Reply).status).toBe(200);
    expect(nested?.status).toBe(200);
    expect(JSON.parse((r as Reply).body).ips[0].address).toBe('10.9.8.7/24');
    expect(events).toEqual(['parent start', 'start nested', 'end nested', 'parent end']);
  });
});

describe('daemon bounds', () => {
  it('past maxConcurrentCalls + maxQueuedCalls a call is refused at once with 503 and CNI code 11', async () => {
    const { socket, d } = await start({ maxConcurrentCalls: 1, maxQueuedCalls: 1 });
    const a = cni(socket, baseEnv('ADD', 'a', 'eth0', 'ca'));
    await waitFor(() => started('a'), 'a');
    const b = cni(socket, baseEnv('ADD', 'b', 'eth0', 'cb'));
    await sleep(50);
    expect(d.inflight()).toBe(1);
    const c = await cni(socket, baseEnv('ADD', 'c', 'eth0', 'cc'), netconf({ cniVersion: '0.4.0' }));
    expect(c.status).toBe(503);
    expect(JSON.parse(c.body)).toMatchObject({ cniVersion: '0.4.0', code: 11 });
    expect(JSON.parse(c.body).msg).toMatch(/busy: 1 calls running and 1 waiting/);
    expect(started('b')).toBe(false);
    expect(started('c')).toBe(false);
    open('a');
    open('b');
    expect((await a).status).toBe(200);
    expect((await b).status).toBe(200);
    // Slots are free again.
    open('d');
    expect((await cni(socket, baseEnv('ADD', 'd', 'eth0', 'cd'))).status).toBe(200);
  });

  it('callTimeoutMs aborts ctx.signal; a plugin that settles within the grace answers with its own error', async () => {
    const { socket } = await start({ callTimeoutMs: 150 });
    onAbort.set('t', 'throw');
    const t0 = Date.now();
    const r = await cni(socket, baseEnv('ADD', 't'));
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(events).toContain('abort t');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ code: 102, msg: 't: cancelled, rolled back' });
  });

  it('callTimeoutMs: a plugin that ignores the signal gets code 11 after the grace, and keeps the lock until it settles', async () => {
    const { socket, d } = await start({ callTimeoutMs: 400 });
    onAbort.set('slow', 'ignore');
    const r = await cni(socket, baseEnv('ADD', 'slow'));
    expect(events).toContain('abort slow');
    expect(events).not.toContain('end slow');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ code: 11 });
    expect(JSON.parse(r.body).msg).toMatch(/no answer within 400 ms/);
    expect(d.inflight()).toBe(1);
    // The runtime's DEL for the same attachment waits for the ADD that is still running.
    const del = cni(socket, baseEnv('DEL', 'del'));
    open('del');
    // (The call timeout counts from arrival, so the DEL is let go well within it.)
    await sleep(100);
    expect(started('del')).toBe(false);
    open('slow');
    expect((await del).status).toBe(200);
    expect(events.indexOf('start del')).toBeGreaterThan(events.indexOf('end slow'));
  }, 20_000);

  it('callTimeoutMs: a call that times out while waiting for the lock is answered code 11 and never started', async () => {
    const { socket } = await start({ callTimeoutMs: 300 });
    onAbort.set('hold', 'ignore');
    const hold = cni(socket, baseEnv('ADD', 'hold'));
    await waitFor(() => started('hold'), 'hold');
    const late = cni(socket, baseEnv('DEL', 'late'));
    open('late');
    await sleep(600);
    open('hold');
    // The holder settled within the grace: its own answer.
    expect((await hold).status).toBe(200);
    const r = await late;
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ code: 11 });
    expect(JSON.parse(r.body).msg).toMatch(/^test DEL: cancelled before it started/);
    expect(started('late')).toBe(false);
  });

  it('a client that disconnects mid-call aborts ctx.signal', async () => {
    const { socket, d } = await start();
    let client: ReturnType<typeof request> | undefined;
    const p = http(
      socket,
      {
        body: JSON.stringify({
          env: baseEnv('ADD', 'gone'),
          config: Buffer.from(JSON.stringify(netconf())).toString('base64'),
        }),
        headers: { 'X-Cni-Kit-Shim': '1' },
      },
      (req) => {
        client = req;
      },
    ).catch((e: Error) => e);
    await waitFor(() => started('gone'), 'the call to start');
    client?.destroy();
    await waitFor(() => events.includes('abort gone'), 'the signal to abort');
    expect(await p).toBeInstanceOf(Error);
    await waitFor(() => d.inflight() === 0, 'the call to end');
  });

  it('a caller that leaves while its call waits for a slot or for the lock: the plugin never runs it', async () => {
    const { socket, d } = await start({ maxConcurrentCalls: 1, maxQueuedCalls: 4 });
    const a = cni(socket, baseEnv('ADD', 'a'));
    await waitFor(() => started('a'), 'a');
    // Queued for the only slot (another interface, so only the limiter holds it back).
    const q = leaving(socket, 'queued', 'net1');
    await sleep(50);
    expect(d.metrics.inflight).toBe(1);
    q.leave();
    expect(await q.p).toBeInstanceOf(Error);
    open('a');
    expect((await a).status).toBe(200);
    await sleep(100);
    expect(started('queued')).toBe(false);
    await waitFor(() => d.inflight() === 0, 'nothing running');
    // Waiting for the lock of c1/eth0 (slots are free) and leaving: the plugin never runs it.
    await d.close();
    const { socket: s2 } = await start();
    const c = cni(s2, baseEnv('ADD', 'c'));
    await waitFor(() => started('c'), 'c');
    const locked = leaving(s2, 'locked', 'eth0');
    await sleep(50);
    locked.leave();
    expect(await locked.p).toBeInstanceOf(Error);
    await sleep(50);
    open('c');
    expect((await c).status).toBe(200);
    await sleep(100);
    expect(started('locked')).toBe(false);
  });

  it('maxRequestBytes: a larger body is refused with 413 and a CNI error JSON (declared or streamed)', async () => {
    const { socket } = await start({ maxRequestBytes: 2048 });
    const big = JSON.stringify({ env: baseEnv('ADD', 'big'), config: Buffer.alloc(4000).toString('base64') });
    const r = await http(socket, { body: big, headers: { 'X-Cni-Kit-Shim': '1' } });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body)).toMatchObject({ code: 6, msg: 'request body: over 2048 bytes' });
    // Without Content-Length (chunked), the limit is enforced on what arrives.
    const chunked = await new Promise<Reply>((resolve, reject) => {
      const req = request(
        {
          socketPath: socket,
          path: '/cni',
          method: 'POST',
          agent: false,
          headers: { 'Transfer-Encoding': 'chunked' },
        },
        (res) => {
          let b = '';
          res.on('data', (c) => {
            b += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
        },
      );
      req.on('error', reject);
      req.write(big.slice(0, 1500));
      setTimeout(() => req.end(big.slice(1500)), 20);
    });
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body).code).toBe(6);
    expect(events).toEqual([]);
  });

  it('refuses malformed requests with 400, CNI code 6 naming the field; an unknown type with 400 code 7 listing the served types', async () => {
    const { socket } = await start({ aliases: { 'test-alias': 'test' } });
    const bad = async (body: string, field: RegExp) => {
      const r = await http(socket, { body, headers: { 'X-Cni-Kit-Shim': '1' } });
      expect(r.status).toBe(400);
      const e = JSON.parse(r.body);
      expect(e.code).toBe(6);
      expect(e.msg).toMatch(field);
    };
    await bad('not json', /^request body: not JSON/);
    await bad('{"env":[],"config":""}', /^request env: missing or not an object/);
    await bad('{"env":{"CNI_COMMAND":7},"config":""}', /^request env\.CNI_COMMAND: 7 is not a string/);
    await bad('{"env":{},"config":"%%%"}', /^request config: not standard base64/);
    const u = await cni(socket, baseEnv('ADD', 'u'), netconf({ type: 'nope', cniVersion: '0.3.1' }));
    expect(u.status).toBe(400);
    const e = JSON.parse(u.body);
    expect(e).toMatchObject({ cniVersion: '0.3.1', code: 7 });
    expect(e.msg).toBe('type: "nope" is not served by this daemon (it serves child, test, test-alias)');
    // No type in the config: the shim's plugin header names it.
    open('hinted');
    const hinted = await cni(
      socket,
      baseEnv('ADD', 'hinted'),
      { cniVersion: '1.1.0', name: 'n' },
      {
        'X-Cni-Kit-Shim': '1',
        'X-Cni-Kit-Plugin': 'test',
      },
    );
    expect(hinted.status).toBe(200);
    expect(events).toEqual(['start hinted', 'end hinted']);
    // The shim's plugin wins over the config's type: an IPAM plugin's stdin is its parent's config,
    // whose type names the parent (bridge → host-local).
    open('parent');
    const ipam = await cni(
      socket,
      baseEnv('ADD', 'parent'),
      { cniVersion: '1.1.0', name: 'n', type: 'bridge' },
      { 'X-Cni-Kit-Shim': '1', 'X-Cni-Kit-Plugin': 'test' },
    );
    expect(ipam.status, ipam.body).toBe(200);
    expect(events).toEqual(['start hinted', 'end hinted', 'start parent', 'end parent']);
  });

  it('GET /cni is 405, /nope 404, /healthz and /readyz 200', async () => {
    const { socket } = await start();
    expect((await http(socket, { method: 'GET' })).status).toBe(405);
    expect((await http(socket, { method: 'GET', path: '/nope' })).status).toBe(404);
    expect((await http(socket, { method: 'GET', path: '/healthz' })).status).toBe(200);
    expect((await http(socket, { method: 'GET', path: '/readyz' })).status).toBe(200);
  });
});

describe('daemon shutdown', () => {
  it('close() stops accepting (the socket file goes, connecting fails) while an in-flight call finishes and is answered', async () => {
    const { socket, d } = await start();
    const a = cni(socket, baseEnv('ADD', 'inflight'));
    await waitFor(() => started('inflight'), 'the call');
    const closed = d.close();
    await waitFor(() => !existsSync(socket), 'the socket file to go');
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      const s = connect(socket);
      s.on('connect', () => {
        s.destroy();
        resolve(undefined);
      });
      s.on('error', (e) => resolve(e));
    });
    expect(err?.code).toMatch(/ENOENT|ECONNREFUSED/);
    let done = false;
    void closed.then(() => {
      done = true;
    });
    await sleep(50);
    expect(done).toBe(false);
    open('inflight');
    const r = await a;
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).interfaces).toEqual([{ name: 'eth0' }]);
    await closed;
    expect(events).not.toContain('abort inflight');
  });

  it('close() refuses a call still waiting for a slot (503, code 11) instead of starting it while the daemon goes away', async () => {
    const { socket, d } = await start({ maxConcurrentCalls: 1, maxQueuedCalls: 4 });
    const a = cni(socket, baseEnv('ADD', 'a'));
    await waitFor(() => started('a'), 'a');
    const b = cni(socket, baseEnv('ADD', 'b', 'net1'));
    await sleep(50);
    const closed = d.close();
    await waitFor(() => !existsSync(socket), 'the socket file to go');
    open('a');
    open('b');
    expect((await a).status).toBe(200);
    const rb = await b;
    expect(rb.status).toBe(503);
    expect(JSON.parse(rb.body)).toMatchObject({ code: 11, msg: 'the cni-kit daemon is shutting down' });
    await closed;
    expect(started('b')).toBe(false);
  });

  it('calls still running at shutdownTimeoutMs get their signal aborted', async () => {
    const { socket, d } = await start({ shutdownTimeoutMs: 200 });
    const a = cni(socket, baseEnv('ADD', 'stuck'));
    await waitFor(() => started('stuck'), 'the call');
    const t0 = Date.now();
    await d.close();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(events).toContain('abort stuck');
    const r = await a.catch((e: Error) => e);
    // The plugin's own rollback error is the answer, when the connection is still there for it.
    if (!(r instanceof Error)) expect(JSON.parse(r.body)).toMatchObject({ code: 102 });
  });
});

describe('daemon socket', () => {
  it('creates the socket folder 0700 and the socket 0600; tightens an existing private folder', async () => {
    const dir = join(privateDir(), 'a', 'b');
    const { socket } = await start({ socket: join(dir, 'd.sock') });
    expect(statSync(dir).mode & 0o7777).toBe(0o700);
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const loose = privateDir();
    chmodSync(loose, 0o750);
    await start({ socket: join(loose, 'd.sock') });
    expect(statSync(loose).mode & 0o777).toBe(0o700);
  });

  it('refuses a world-writable folder and a non-socket file at the path, naming the path', async () => {
    const shared = privateDir();
    chmodSync(shared, 0o1777);
    await expect(start({ socket: join(shared, 'd.sock') })).rejects.toThrow(
      new RegExp(`socket folder ${shared} is writable by others`),
    );
    const dir = privateDir();
    const file = join(dir, 'd.sock');
    writeFileSync(file, 'not a socket');
    await expect(start({ socket: file })).rejects.toThrow(`${file} exists and is not a socket`);
    expect(existsSync(file)).toBe(true);
  });

  it('replaces a stale socket file left by a daemon that died', async () => {
    const dir = privateDir();
    const socket = join(dir, 'd.sock');
    // A socket bound by a process that then exits without unlinking it.
    const py = spawnSync('python3', [
      '-c',
      'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])',
      socket,
    ]);
    expect(py.status).toBe(0);
    expect(statSync(socket).isSocket()).toBe(true);
    await start({ socket });
    expect((await http(socket, { method: 'GET', path: '/healthz' })).status).toBe(200);
    expect(
      logLines.some((l) => JSON.parse(l).msg === 'replaced a socket file left by an earlier daemon'),
    ).toBe(true);
  });
});

describe('daemon socket held by a live daemon', () => {
  it('a second daemon on a socket a live daemon serves is refused, naming the path; the first keeps serving after it', async () => {
    const { socket, d } = await start();
    await expect(start({ socket })).rejects.toThrow(`${socket}: a daemon is listening there`);
    expect((await http(socket, { method: 'GET', path: '/healthz' })).status).toBe(200);
    open('still');
    expect((await cni(socket, baseEnv('ADD', 'still'))).status).toBe(200);
    await d.close();
    expect(existsSync(socket)).toBe(false);
  });
});

describe('daemon hygiene, logs and metrics', () => {
  it('a plugin that prints: only the result reaches the reply, the lines reach the debug log, console.log is restored after concurrent calls', async () => {
    const original = console.log;
    const noisy: PluginSpec = {
      add: async (ctx) => {
        console.log(`noise from ${ctx.containerId}`);
        await held(ctx);
        process.stdout.write(`more from ${ctx.containerId}\n`);
        console.error(`err from ${ctx.containerId}`);
        return { interfaces: [{ name: ctx.ifname }] };
      },
    };
    const { socket } = await start({ plugins: { noisy: hostedPlugin(noisy) } });
    const ids = ['n1', 'n2', 'n3', 'n4'];
    const calls = ids.map((id) => cni(socket, baseEnv('ADD', id, 'eth0', id), netconf({ type: 'noisy' })));
    await waitFor(() => ids.every(started), 'all calls');
    expect(console.log).not.toBe(original);
    for (const id of ids.reverse()) open(id);
    const replies = await Promise.all(calls);
    for (const r of replies) {
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({ cniVersion: '1.1.0', interfaces: [{ name: 'eth0' }] });
      const callId = r.headers['x-cni-kit-call-id'];
      const lines = logLines
        .map((l) => JSON.parse(l))
        .filter((l) => l.callId === callId && l.source === 'plugin')
        .map((l) => l.msg);
      const done = logLines
        .map((l) => JSON.parse(l))
        .find((l) => l.callId === callId && l.msg === 'call done');
      const id = done.containerId;
      expect(lines).toEqual([`noise from ${id}`, `more from ${id}`, `err from ${id}`]);
    }
    expect(console.log).toBe(original);
  });

  it('logs one JSON line per call with callId, plugin, command, containerId, ifname, durationMs (and code on failure), matching X-Cni-Kit-Call-Id', async () => {
    const { socket } = await start({ logger: jsonLogger('info', (l) => logLines.push(l)) });
    open('ok');
    open('ko');
    const ok = await cni(socket, baseEnv('ADD', 'ok', 'eth1', 'cid-ok'));
    const ko = await cni(socket, { ...baseEnv('ADD', 'ko', 'eth2', 'cid-ko'), TEST_FAIL: '42' });
    expect(ok.status).toBe(200);
    expect(ko.status).toBe(400);
    const records = logLines.map((l) => {
      expect(l.endsWith('\n')).toBe(true);
      expect(l.slice(0, -1)).not.toContain('\n');
      return JSON.parse(l);
    });
    const calls = records.filter((r) => r.msg === 'call done' || r.msg === 'call failed');
    expect(calls).toHaveLength(2);
    const [a, b] = calls;
    expect(a).toMatchObject({
      level: 'info',
      msg: 'call done',
      callId: ok.headers['x-cni-kit-call-id'],
      plugin: 'test',
      command: 'ADD',
      containerId: 'cid-ok',
      ifname: 'eth1',
    });
    expect(typeof a.durationMs).toBe('number');
    expect(a.code).toBeUndefined();
    expect(b).toMatchObject({
      level: 'error',
      msg: 'call failed',
      callId: ko.headers['x-cni-kit-call-id'],
      plugin: 'test',
      command: 'ADD',
      containerId: 'cid-ko',
      ifname: 'eth2',
      code: 42,
      error: 'eth2: refused on purpose',
    });
    expect(typeof b.durationMs).toBe('number');
    expect(a.callId).not.toBe(b.callId);
  });

  it('metricsPort 0 serves /metrics on a free port with calls, errors and the latency histogram of the calls made', async () => {
    const { socket, d } = await start({ metricsPort: 0 });
    expect(d.metricsPort).toBeGreaterThan(0);
    open('m1');
    open('m2');
    open('m3');
    await cni(socket, baseEnv('ADD', 'm1', 'eth0', 'm1'));
    await cni(socket, baseEnv('DEL', 'm2', 'eth0', 'm1'));
    await cni(socket, { ...baseEnv('ADD', 'm3', 'eth0', 'm3'), TEST_FAIL: '7' });
    await http(socket, { body: '{}' });
    const text = await new Promise<string>((resolve, reject) => {
      request({ host: '127.0.0.1', port: d.metricsPort, path: '/metrics', agent: false }, (res) => {
        expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
        let b = '';
        res.on('data', (c) => {
          b += c;
        });
        res.on('end', () => resolve(b));
      })
        .on('error', reject)
        .end();
    });
    const lines = text.split('\n');
    expect(lines).toContain('cni_kit_daemon_calls_total{plugin="test",command="ADD"} 2');
    expect(lines).toContain('cni_kit_daemon_calls_total{plugin="test",command="DEL"} 1');
    expect(lines).toContain('cni_kit_daemon_call_errors_total{plugin="test",command="ADD",code="7"} 1');
    expect(lines).toContain('cni_kit_daemon_requests_refused_total{reason="malformed"} 1');
    expect(lines).toContain(
      'cni_kit_daemon_call_duration_seconds_bucket{plugin="test",command="ADD",le="+Inf"} 2',
    );
    expect(lines).toContain('cni_kit_daemon_call_duration_seconds_count{plugin="test",command="DEL"} 1');
    expect(lines).toContain('cni_kit_daemon_inflight_calls 0');
  });
});

describe('multus-shim compatibility', () => {
  /** A request exactly as upstream multus-shim sends it: its whole environment, stdin in base64. */
  const multusShim = (
    socket: string,
    command: string,
    id: string,
    conf: Record<string, unknown>,
    extra: Record<string, unknown> = {},
  ) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
    Object.assign(env, baseEnv(command, id, 'eth0', `pod-${id}`));
    return http(socket, {
      body: JSON.stringify({ env, config: Buffer.from(JSON.stringify(conf)).toString('base64'), ...extra }),
      headers: { 'Content-Type': 'application/json' },
    });
  };
  const multusConf = (cniVersion: string) => ({
    cniVersion,
    name: 'multus-cni-network',
    type: 'multus-shim',
    logLevel: 'verbose',
    logToStderr: true,
  });

  it('"type": "multus-shim" runs the plugin served as multus; ADD answers {"Result": <1.0.0 result>} whatever the config version', async () => {
    const { socket } = await start({
      plugins: { multus: hostedPlugin(testPlugin) },
      aliases: { 'multus-shim': 'multus' },
    });
    for (const v of ['0.3.1', '1.1.0']) {
      open(`add-${v}`);
      const r = await multusShim(socket, 'ADD', `add-${v}`, multusConf(v), {
        interfaceAttributes: { ipRequest: ['10.9.8.7/24'] },
      });
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toEqual({
        Result: {
          cniVersion: '1.0.0',
          interfaces: [{ name: 'eth0' }],
          ips: [{ interface: 0, address: '10.9.8.7/24' }],
        },
      });
    }
    open('del');
    const del = await multusShim(socket, 'DEL', 'del', multusConf('0.3.1'));
    expect(del).toMatchObject({ status: 200, body: '' });
    open('check');
    const check = await multusShim(socket, 'CHECK', 'check', {
      ...multusConf('1.0.0'),
      prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }] },
    });
    expect(check).toMatchObject({ status: 200, body: '' });
    open('fail');
    const r = await http(socket, {
      body: JSON.stringify({
        env: { ...baseEnv('ADD', 'fail'), TEST_FAIL: '4' },
        config: Buffer.from(JSON.stringify(multusConf('0.3.1'))).toString('base64'),
      }),
    });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({
      cniVersion: '0.3.1',
      code: 4,
      msg: 'eth0: refused on purpose',
    });
    expect(logLines.map((l) => JSON.parse(l)).filter((l) => l.client === 'multus-shim')).toHaveLength(5);
  });
});
