// multus fields that used to be accepted and ignored: logOptions (logFile rotation as multus's
// lumberjack does it) and auxiliaryCNIChainName (run as multus would, or refused when it cannot be);
// and a refused network-status write, which fails ADD as in multus.
import {
  chmodSync,
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
import { gunzipSync } from 'node:zlib';
import { type NetConf, runPlugin } from 'cni-kit';
import { KubeApiError } from 'cni-kit/k8s';
import { memoryNetlink } from 'cni-kit/netlink';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multusConfig } from '../../examples/multus/config.js';
import { appendRotated, backupStamp, type LogRotation } from '../../examples/multus/log.js';
import { multusPlugin } from '../../examples/multus/plugin.js';
import { BIN_DIR } from '../helpers/plugin.js';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), `multuslog${process.pid}-`));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MB = 1024 * 1024;
const rot = (o: Partial<LogRotation> = {}): LogRotation => ({
  maxSize: 1,
  maxAge: 0,
  maxBackups: 0,
  compress: false,
  ...o,
});
const fresh = () => mkdtempSync(join(dir, 'd-'));

describe('logFile rotation (logOptions)', () => {
  it('rotates when a write would reach maxSize: the old file becomes <name>-<UTC stamp><ext>, gzipped, mode kept', () => {
    const d = fresh();
    const file = join(d, 'multus.log');
    writeFileSync(file, 'x'.repeat(MB - 10));
    chmodSync(file, 0o640);
    const now = new Date(Date.UTC(2026, 10, 27, 9, 8, 7, 6));
    expect(appendRotated(file, 'short line\n', rot({ compress: true }), now)).toBe(true);
    expect(backupStamp(now)).toBe('2026-11-27T09-08-07.006');
    expect(readdirSync(d).sort()).toEqual(['multus-2026-11-27T09-08-07.006.log.gz', 'multus.log']);
    expect(gunzipSync(readFileSync(join(d, 'multus-2026-11-27T09-08-07.006.log.gz'))).length).toBe(MB - 10);
    expect(readFileSync(file, 'utf8')).toBe('short line\n');
    expect(statSync(file).mode & 0o777).toBe(0o640);
    // Below the limit nothing rotates.
    expect(appendRotated(file, 'more\n', rot({ compress: true }), now)).toBe(true);
    expect(readdirSync(d)).toHaveLength(2);
    // A single line larger than maxSize is refused, as lumberjack does.
    expect(appendRotated(file, 'y'.repeat(MB + 1), rot(), now)).toBe(false);
  });

  it('keeps at most maxBackups backups and none older than maxAge days', () => {
    const d = fresh();
    const file = join(d, 'm.log');
    const now = new Date(Date.UTC(2026, 10, 27, 12, 0, 0, 0));
    const daysAgo = (n: number) => new Date(now.getTime() - n * 24 * 3600 * 1000);
    for (const n of [1, 2, 3]) writeFileSync(join(d, `m-${backupStamp(daysAgo(n))}.log`), 'old');
    writeFileSync(join(d, `m-${backupStamp(daysAgo(10))}.log.gz`), 'older');
    writeFileSync(join(d, 'unrelated.log'), 'keep me');
    writeFileSync(file, 'x'.repeat(MB));
    appendRotated(file, 'line\n', rot({ maxBackups: 3, maxAge: 2.5 }), now);
    expect(readdirSync(d).sort()).toEqual(
      [
        `m-${backupStamp(now)}.log`,
        `m-${backupStamp(daysAgo(1))}.log`,
        `m-${backupStamp(daysAgo(2))}.log`,
        'm.log',
        'unrelated.log',
      ].sort(),
    );
  });

  it('multus rotates its logFile with logOptions; unknown or mistyped logOptions are refused naming the field', async () => {
    const d = fresh();
    const logFile = join(d, 'multus.log');
    writeFileSync(logFile, 'x'.repeat(MB - 5));
    const conf = {
      cniVersion: '1.0.0',
      name: 'multus-cni-network',
      type: 'multus',
      delegates: [{ name: 'c', type: 'bridge' }],
      cniDir: join(d, 'cache'),
      logFile,
      logToStderr: false,
      logOptions: { maxSize: 1, compress: false },
    };
    mkdirSync(join(d, 'cache'));
    writeFileSync(join(d, 'cache', 'c1'), '{"kind":"cniKitMultusV1"'); // corrupt: DEL logs about it
    const del = await runPlugin(multusPlugin(), {
      env: {
        CNI_COMMAND: 'DEL',
        CNI_CONTAINERID: 'c1',
        CNI_NETNS: '',
        CNI_IFNAME: 'eth0',
        CNI_PATH: join(d, 'none'),
      },
      stdin: JSON.stringify(conf),
    });
    expect(del.stderr).toBe('');
    const names = readdirSync(d).filter((n) => n.startsWith('multus'));
    expect(names).toHaveLength(2);
    expect(readFileSync(logFile, 'utf8')).toMatch(/cache file .* is unusable/);
    const parse = (c: Record<string, unknown>) => multusConfig.parse({ ...conf, ...c } as unknown as NetConf);
    expect(() => parse({ logOptions: { maxsize: 1 } })).toThrow(
      /logOptions: unknown field "maxsize"; logOptions takes maxAge, maxSize, maxBackups, compress/,
    );
    expect(() => parse({ logOptions: { maxSize: 'big' } })).toThrow(/logOptions\.maxSize/);
    expect(parse({ logOptions: { maxAge: 1, maxBackups: 2, compress: true } }).logOptions).toEqual({
      maxAge: 1,
      maxBackups: 2,
      compress: true,
    });
  });
});

describe('auxiliaryCNIChainName', () => {
  const nl = memoryNetlink();
  nl.addNetns('/var/run/netns/aux');
  const run = (conf: Record<string, unknown>, command = 'ADD') =>
    runPlugin(multusPlugin({ netlink: () => nl }), {
      env: {
        CNI_COMMAND: command,
        CNI_CONTAINERID: 'aux1',
        CNI_NETNS: '/var/run/netns/aux',
        CNI_IFNAME: 'eth0',
        CNI_PATH: BIN_DIR,
      },
      stdin: JSON.stringify({
        cniVersion: '1.0.0',
        name: 'multus-cni-network',
        type: 'multus',
        binDir: BIN_DIR,
        ...conf,
      }),
    });

  it('needs clusterNetwork to be a path, runs nothing extra for an empty chain, and refuses a chain it cannot run', async () => {
    const d = fresh();
    const cluster = join(d, '10-debug.conf');
    writeFileSync(cluster, JSON.stringify({ cniVersion: '1.0.0', name: 'dbg', type: 'debug' }));
    const notPath = await run({
      clusterNetwork: 'dbg',
      confDir: d,
      cniDir: join(d, 'c'),
      auxiliaryCNIChainName: 'aux',
    });
    expect(notPath.exitCode).toBe(1);
    expect(JSON.parse(notPath.stdout)).toMatchObject({
      code: 7,
      msg: expect.stringContaining(
        'auxiliaryCNIChainName: auxiliary chain used but clusterNetwork must be a path',
      ),
    });
    // No <dir>/aux directory (or an empty one): multus adds no chain, the pod gets its network.
    const conf = { clusterNetwork: cluster, cniDir: join(d, 'c'), auxiliaryCNIChainName: 'aux' };
    const ok = await run(conf);
    expect(ok.exitCode, ok.stdout).toBe(0);
    expect((await run(conf, 'DEL')).exitCode).toBe(0);
    mkdirSync(join(d, 'aux'));
    writeFileSync(join(d, 'aux', 'tuning.conf'), JSON.stringify({ name: 'mytuning', type: 'tuning' }));
    const refused = await run(conf);
    expect(refused.exitCode).toBe(1);
    expect(JSON.parse(refused.stdout)).toMatchObject({
      code: 7,
      msg: expect.stringMatching(
        /auxiliaryCNIChainName "aux": .*tuning\.conf.*cannot run an auxiliary chain.*remove auxiliaryCNIChainName/,
      ),
    });
    expect(readdirSync(join(d, 'c')).filter((n) => n !== 'results')).toEqual([]);
  });
});

describe('network-status write failures', () => {
  const nl = memoryNetlink();
  nl.addNetns('/var/run/netns/st');
  const pod = { metadata: { name: 'p', namespace: 'default', uid: 'u1', resourceVersion: '3' } };

  it('a refused network-status write fails ADD as multus does and leaves nothing attached; a deleted pod is tolerated', async () => {
    const d = fresh();
    const rec = join(d, 'rec.jsonl');
    const events: unknown[] = [];
    const make = (updateStatus: number) =>
      multusPlugin({
        netlink: () => nl,
        kubeClient: async () => ({
          getPod: async () => pod,
          getNetworkAttachmentDefinition: async () => {
            throw new KubeApiError(404, 'none');
          },
          listNetworkAttachmentDefinitions: async () => [],
          updatePodAnnotations: async () => {
            throw new KubeApiError(updateStatus, `PATCH pod default/p status: ${updateStatus} refused`);
          },
          createEvent: async (_ns, ev) => {
            events.push(ev);
          },
        }),
      });
    const conf = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'multus-cni-network',
      type: 'multus',
      kubeconfig: '/unused',
      binDir: BIN_DIR,
      cniDir: join(d, 'c'),
      delegates: [{ cniVersion: '1.0.0', name: 'dbg', type: 'debug', recordFile: rec }],
    });
    const env = {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'st1',
      CNI_NETNS: '/var/run/netns/st',
      CNI_IFNAME: 'eth0',
      CNI_PATH: BIN_DIR,
      CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=p',
    };
    const add = await runPlugin(make(403), { env, stdin: conf });
    expect(add.exitCode).toBe(1);
    expect(JSON.parse(add.stdout)).toMatchObject({
      code: 7,
      msg: expect.stringContaining(
        'error setting the networks status: PATCH pod default/p status: 403 refused',
      ),
    });
    const commands = () =>
      readFileSync(rec, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).command);
    expect(commands()).toEqual(['ADD', 'DEL']);
    expect(readdirSync(join(d, 'c')).filter((n) => n !== 'results')).toEqual([]);
    const ok = await runPlugin(make(404), { env, stdin: conf });
    expect(ok.exitCode, ok.stdout).toBe(0);
    expect(commands()).toEqual(['ADD', 'DEL', 'ADD']);
    expect(events).toHaveLength(2);

    // A network reporting no interface gives no network-status entry; with no entry at all multus
    // writes no annotation, so even a refused write cannot fail ADD. Its IPs still make an event.
    const bin = join(d, 'bin');
    mkdirSync(bin);
    writeFileSync(
      join(bin, 'noif'),
      '#!/bin/sh\ncat >/dev/null\n[ "$CNI_COMMAND" = ADD ] && echo \'{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}\'\nexit 0\n',
      { mode: 0o755 },
    );
    const noif = JSON.stringify({
      cniVersion: '1.0.0',
      name: 'multus-cni-network',
      type: 'multus',
      kubeconfig: '/unused',
      binDir: bin,
      cniDir: join(d, 'c2'),
      delegates: [{ cniVersion: '1.0.0', name: 'noif', type: 'noif' }],
    });
    const quiet = await runPlugin(make(403), { env: { ...env, CNI_CONTAINERID: 'st2' }, stdin: noif });
    expect(quiet.exitCode, quiet.stdout).toBe(0);
    expect((events.at(-1) as { message: string }).message).toBe('Add eth0 [10.0.0.2/24] from noif');
  });
});
