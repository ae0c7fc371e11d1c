// A long-lived process (the daemon) serving many whereabouts networks on one etcd, each with its
// own etcd_prefix: one etcd client for all of them (counted as gRPC channels to etcd, from gRPC's
// own channelz registry; gRPC already shares one TCP connection between the channels of one
// target, so each extra client cost memory, not a socket), allocations kept apart per prefix, and
// the client closed (its socket gone) once no network has used it for the TTL.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createWhereaboutsAllocator,
  SharedStores,
  whereaboutsIpam,
} from '../../src/ipam/whereabouts/index.js';
import { hasEtcd, startEtcd, type TestEtcd } from '../helpers/etcd.js';

let etcd: TestEtcd | undefined;
const shared: SharedStores[] = [];
beforeAll(async () => {
  if (hasEtcd()) etcd = await startEtcd('wbshared');
});
afterAll(async () => {
  await Promise.all(shared.map((s) => s.close()));
  await etcd?.stop();
});

/** The gRPC channels open in this process to `target` (host:port), from the gRPC etcd3 uses. */
async function channelsTo(target: string): Promise<number> {
  const fromEtcd3 = createRequire(createRequire(import.meta.url).resolve('etcd3'));
  const grpc = fromEtcd3('@grpc/grpc-js') as {
    getChannelzHandlers(): {
      GetTopChannels(
        call: { request: { start_channel_id: number; max_results: number } },
        cb: (err: unknown, res: { channel: Array<{ data: { target: string } }> }) => void,
      ): void;
    };
  };
  const res = await new Promise<{ channel: Array<{ data: { target: string } }> }>((resolve, reject) =>
    grpc
      .getChannelzHandlers()
      .GetTopChannels({ request: { start_channel_id: 0, max_results: 0 } }, (err, r) =>
        err ? reject(err) : resolve(r),
      ),
  );
  return res.channel.filter((c) => c.data.target.endsWith(target)).length;
}

/** This process's established TCP connections to `port` on the loopback. */
function socketsTo(port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const link = readlinkSync(`/proc/self/fd/${fd}`);
      if (link.startsWith('socket:[')) inodes.add(link.slice(8, -1));
    } catch {
      // closed meanwhile
    }
  }
  let n = 0;
  for (const table of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const remotePort = Number.parseInt(cols[2]!.split(':')[1]!, 16);
      // state 01: ESTABLISHED
      if (remotePort === port && cols[3] === '01' && inodes.has(cols[9]!)) n++;
    }
  }
  return n;
}

/** Polls `ok` (sync or async) until it holds; on timeout says what `seen` last showed. */
async function until(
  what: string,
  ok: () => boolean | Promise<boolean>,
  ms: number,
  seen?: () => unknown,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${seen ? `; saw ${JSON.stringify(await seen())}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('whereabouts on etcd in a long-lived process', () => {
  it('20 networks with their own prefixes share one etcd connection, keep their pools apart, and it closes when idle', async (ctx) => {
    if (!etcd) ctx.skip('no /usr/bin/etcd on this machine');
    const port = Number(new URL(etcd!.url).port);
    // The harness's health checks (HTTP keep-alive) go first.
    await until('the health-check sockets to close', () => socketsTo(port) === 0, 15_000);
    // An 8 s TTL: the checks below (fresh connections of their own) finish well within it even on a
    // loaded machine, so the shared client is still there for them to count.
    const sharedStores = new SharedStores(8_000, 100);
    shared.push(sharedStores);
    const factory = whereaboutsIpam({ sharedStores });
    const conf = (i: number) => ({
      cniVersion: '1.1.0',
      name: `net${i}`,
      ipam: {
        type: 'whereabouts',
        range: '10.95.0.0/24',
        datastore: 'etcd',
        etcd_host: etcd!.url,
        etcd_prefix: `/net${i}`,
      },
    });
    const nets = Array.from({ length: 20 }, (_, i) => i);
    const got = await Promise.all(
      nets.flatMap((i) =>
        [0, 1, 2].map(async (k) => {
          const a = await factory(conf(i) as never, {});
          const r = await a.allocate({
            containerId: `c${i}-${k}`,
            ifname: 'net1',
            podRef: `default/p${i}-${k}`,
          });
          return { i, ip: r.ips![0]!.address.split('/')[0]! };
        }),
      ),
    );
    const target = `127.0.0.1:${port}`;
    expect(await channelsTo(target)).toBe(1);
    expect(sharedStores.connections).toBe(1);
    expect(sharedStores.stores).toBe(20);
    expect(socketsTo(port)).toBe(1);
    // Three distinct addresses in each network (calls in flight in one process spread their first
    // tries, so which three is not fixed) ...
    for (const i of nets) expect(new Set(got.filter((g) => g.i === i).map((g) => g.ip)).size).toBe(3);
    // ... held under its own prefix: seen through a store of its own, three each, 60 in all.
    for (const i of nets) {
      const check = createWhereaboutsAllocator(conf(i) as never);
      try {
        const pools = (await check.status()).pools;
        expect(pools.map((p) => p.used)).toEqual([3]);
      } finally {
        await check.close();
      }
    }
    expect(await channelsTo(target)).toBe(1);
    // A DEL through the shared client frees its address in its own network only.
    await (await factory(conf(5) as never, {})).release({ containerId: 'c5-0', ifname: 'net1' });
    for (const i of [5, 6]) {
      const check = createWhereaboutsAllocator(conf(i) as never);
      try {
        expect((await check.status()).pools.map((p) => p.used)).toEqual([i === 5 ? 2 : 3]);
      } finally {
        await check.close();
      }
    }
    await until(
      'the check stores to disconnect',
      () => socketsTo(port) === 1,
      15_000,
      () => socketsTo(port),
    );
    expect(sharedStores.connections).toBe(1);
    // Nobody asks for 8 s (the TTL here): the stores go and the client closes.
    await until('the idle client to close', () => sharedStores.connections === 0, 30_000);
    expect(sharedStores.stores).toBe(0);
    // The channel closes after the grace (100 ms here): waited for, not assumed after a fixed time.
    await until(
      'the channel to close',
      async () => (await channelsTo(target)) === 0,
      15_000,
      () => channelsTo(target),
    );
    expect(sharedStores.connections).toBe(0);
    await until(
      'its socket to close',
      () => socketsTo(port) === 0,
      15_000,
      () => socketsTo(port),
    );
  }, 90_000);
});
