// Names and IDs too long for the file names state is kept under (F14, and the generic half of F6):
// refused at parse time with the limit named, so ADD fails cleanly and DEL is never blocked; and
// failed system calls reworded instead of Node's raw errno text (F17).
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniError, ErrorCode, runPlugin } from 'cni-kit';
import { memoryNetlink } from 'cni-kit/netlink';
import {
  describeSystemError,
  MAX_CONTAINER_ID_BYTES,
  MAX_NETWORK_NAME_BYTES,
  parseNetConf,
  validateContainerId,
} from 'cni-kit/spec';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { createBridgePlugin } from '../../examples/bridge/plugin.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const env = (cmd: string, id = 'c1') => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: id,
  CNI_NETNS: '/var/run/netns/c1',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/nonexistent',
});

function bridge() {
  const nl = memoryNetlink();
  nl.addNetns('/var/run/netns/c1');
  const plugin = createBridgePlugin({
    netlink: nl,
    iptables: async () => ({ code: 0, stdout: '', stderr: '' }),
  });
  const dataDir = mkdtempSync(join(tmpdir(), `cklim-${process.pid}-`));
  dirs.push(dataDir);
  const conf = (name: string) =>
    JSON.stringify({
      cniVersion: '1.0.0',
      name,
      type: 'bridge',
      bridge: 'br7',
      ipam: { type: 'host-local', subnet: '10.77.0.0/24', dataDir },
    });
  return { nl, plugin, dataDir, conf };
}

describe('network names', () => {
  it('a name over the limit is code 7 naming the field, the length and the limit', () => {
    const ok = 'n'.repeat(MAX_NETWORK_NAME_BYTES);
    expect(parseNetConf(JSON.stringify({ name: ok, type: 't' })).name).toBe(ok);
    for (const len of [MAX_NETWORK_NAME_BYTES + 1, 256, 300]) {
      let err: unknown;
      try {
        parseNetConf(JSON.stringify({ cniVersion: '1.0.0', name: 'n'.repeat(len), type: 't' }));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CniError);
      expect((err as CniError).code).toBe(ErrorCode.InvalidNetworkConfig);
      expect((err as CniError).message).toContain(
        `name: "${'n'.repeat(56)}... is ${len} bytes long; the limit is ${MAX_NETWORK_NAME_BYTES} bytes`,
      );
      expect((err as CniError).message).toContain('use a shorter network name');
    }
  });

  it('bridge with a 300-character name: ADD is code 7 and creates nothing; DEL succeeds, twice', async () => {
    const b = bridge();
    const conf = b.conf('n'.repeat(300));
    const add = await runPlugin(b.plugin, { env: env('ADD'), stdin: conf });
    expect(add.exitCode).toBe(1);
    expect(JSON.parse(add.stdout)).toMatchObject({ code: 7 });
    expect(add.stdout).not.toContain('ENAMETOOLONG');
    expect((await b.nl.open('/var/run/netns/c1').links()).map((l) => l.name)).toEqual(['lo']);
    expect(readdirSync(b.dataDir)).toEqual([]);
    for (let i = 0; i < 2; i++) {
      const del = await runPlugin(b.plugin, { env: env('DEL'), stdin: conf });
      expect(del.exitCode, del.stdout).toBe(0);
      expect(del.stdout).toBe('');
      expect(del.stderr).toContain(`longer than ${MAX_NETWORK_NAME_BYTES} bytes`);
    }
    const gc = await runPlugin(b.plugin, {
      env: env('GC'),
      stdin: JSON.stringify({ ...JSON.parse(conf), cniVersion: '1.1.0', 'cni.dev/valid-attachments': [] }),
    });
    expect(gc).toMatchObject({ exitCode: 0, stdout: '' });
  });

  it('property: every name is either accepted by ADD or refused with code 7; DEL always exits 0', async () => {
    const name = fc
      .tuple(fc.integer({ min: 1, max: 400 }), fc.constantFrom('a', 'Z', '9', '-', '.', '_'))
      .map(([n, c]) => `a${c.repeat(n - 1)}`);
    await fc.assert(
      fc.asyncProperty(name, async (n) => {
        const b = bridge();
        const add = await runPlugin(b.plugin, { env: env('ADD'), stdin: b.conf(n) });
        if (n.length > MAX_NETWORK_NAME_BYTES) {
          expect(JSON.parse(add.stdout).code).toBe(7);
        } else {
          expect(add.exitCode, add.stdout).toBe(0);
        }
        const del = await runPlugin(b.plugin, { env: env('DEL'), stdin: b.conf(n) });
        expect(del.exitCode, del.stdout).toBe(0);
        expect((await b.nl.open('/var/run/netns/c1').links()).map((l) => l.name)).toEqual(['lo']);
      }),
      { numRuns: 25 },
    );
  });
});

describe('container IDs', () => {
  it('an ID over the limit is code 4 naming the limit on ADD; DEL of it succeeds without touching state', async () => {
    expect(() => validateContainerId('c'.repeat(MAX_CONTAINER_ID_BYTES))).not.toThrow();
    const id = 'c'.repeat(300);
    const b = bridge();
    const conf = b.conf('net');
    const add = await runPlugin(b.plugin, { env: env('ADD', id), stdin: conf });
    const err = JSON.parse(add.stdout);
    expect(err.code).toBe(ErrorCode.InvalidEnvironmentVariables);
    expect(err.msg).toContain(
      `CNI_CONTAINERID: 300 bytes is too long; the limit is ${MAX_CONTAINER_ID_BYTES} bytes`,
    );
    expect((await b.nl.open('/var/run/netns/c1').links()).map((l) => l.name)).toEqual(['lo']);
    expect(readdirSync(b.dataDir)).toEqual([]);
    const del = await runPlugin(b.plugin, { env: env('DEL', id), stdin: conf });
    expect(del).toMatchObject({ exitCode: 0, stdout: '' });
  });
});

describe('system-call errors (F17)', () => {
  it('ENOENT, EACCES and ENAMETOOLONG read as sentences naming the path, without Node raw text', () => {
    const enoent = Object.assign(new Error("ENOENT: no such file or directory, open '/x/subnet.env'"), {
      code: 'ENOENT',
      errno: -2,
      syscall: 'open',
      path: '/x/subnet.env',
    });
    const e = CniError.from(enoent);
    expect(e.code).toBe(ErrorCode.IOFailure);
    expect(e.message).toBe(
      'cannot open "/x/subnet.env": no such file or directory (ENOENT); create it or fix the path in the config',
    );
    const long = Object.assign(new Error("ENAMETOOLONG: name too long, mkdir '/d/nnn'"), {
      code: 'ENAMETOOLONG',
      syscall: 'mkdir',
      path: '/d/nnn',
    });
    expect(describeSystemError(long)).toBe(
      'cannot create directory "/d/nnn": name too long (ENAMETOOLONG); a file name part is longer than 255 bytes: use shorter names and IDs',
    );
    expect(CniError.from(long, ErrorCode.Internal).code).toBe(ErrorCode.Internal);
    expect(describeSystemError(new Error('plain'))).toBeUndefined();
    expect(CniError.from(new Error('plain')).code).toBe(ErrorCode.Internal);
  });

  it('a plugin whose handler hits a missing file reports it as code 5 in those words', async () => {
    const { readFile } = await import('node:fs/promises');
    const out = await runPlugin(
      {
        add: async () => {
          await readFile('/nonexistent/cni-kit/state.json');
          return { cniVersion: '1.1.0' };
        },
      },
      { env: env('ADD'), stdin: '{"cniVersion":"1.0.0","name":"n","type":"t"}' },
    );
    const err = JSON.parse(out.stdout);
    expect(err.code).toBe(5);
    expect(err.msg).toBe(
      'cannot open "/nonexistent/cni-kit/state.json": no such file or directory (ENOENT); create it or fix the path in the config',
    );
  });
});
