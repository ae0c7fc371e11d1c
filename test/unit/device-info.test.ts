// The device-info spec (NPWG, v1.1.0): file names, the JSON shape checks, and the dp → cni copy
// multus makes before calling a delegate.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cniDeviceInfoPath,
  copyDpDeviceInfo,
  DEVICE_INFO_DIR,
  dpDeviceInfoPath,
  isPciAddress,
  parseDeviceInfo,
  pciDeviceInfo,
  readDeviceInfo,
  removeDeviceInfo,
  writeDeviceInfo,
} from '../../src/k8s/device-info.js';
import { CniError } from '../../src/spec/errors.js';

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'cnikit-devinfo-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function err(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a failure');
}

describe('device-info file names', () => {
  it('follow the spec: dp/<resource>-<device>-device.json and cni/<network>-<container>_<ifname>, "/" as "-"', () => {
    expect(dpDeviceInfoPath('intel.com/sriov_netdevice', '0000:03:02.1')).toBe(
      '/var/run/k8s.cni.cncf.io/devinfo/dp/intel.com-sriov_netdevice-0000:03:02.1-device.json',
    );
    expect(cniDeviceInfoPath('default/sriov-net', 'abc123', 'net1')).toBe(
      `${DEVICE_INFO_DIR}/cni/default-sriov-net-abc123_net1`,
    );
    expect(cniDeviceInfoPath('n', 'c', 'net1', '/x')).toBe('/x/cni/n-c_net1');
  });

  it('stay one distinct file name of at most 255 bytes for any network, container and interface', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 300 }),
        fc.string({ maxLength: 300 }),
        fc.string({ maxLength: 15 }),
        (n, c, i) => {
          const p = cniDeviceInfoPath(n, c, i, '/d');
          expect(p.startsWith('/d/cni/')).toBe(true);
          const name = p.slice('/d/cni/'.length);
          expect(name.includes('/')).toBe(false);
          expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255);
          expect(basename(p)).toBe(name);
        },
      ),
    );
  });
});

describe('device-info documents', () => {
  it('accept the four types of the spec with their required keys, keeping unknown keys', () => {
    const docs = [
      {
        type: 'pci',
        version: '1.1.0',
        pci: { 'pci-address': '0000:18:02.5', 'pf-pci-address': '0000:18:00.0' },
      },
      { type: 'pci', version: '1.0.0', pci: { 'pci-address': '0000:18:02.5' }, vendor: { x: 1 } },
      {
        type: 'vdpa',
        version: '1.1.0',
        vdpa: { 'parent-device': 'vdpa3', driver: 'vhost', path: '/dev/vhost-vdpa0' },
      },
      { type: 'vhost-user', version: '1.1.0', 'vhost-user': { mode: 'server', path: '/var/run/vhost.sock' } },
      {
        type: 'memif',
        version: '1.1.0',
        memif: { role: 'master', path: '/run/memif.sock', mode: 'ethernet' },
      },
    ];
    for (const d of docs) expect(parseDeviceInfo(d, 'x')).toEqual(d);
  });

  it('refuse what the spec rules out, naming the key', () => {
    const cases: Array<[unknown, RegExp]> = [
      [[], /must be a JSON object/],
      [{ type: 'usb', version: '1.1.0' }, /type: "usb" is not one of pci, vdpa, vhost-user, memif/],
      [{ type: 'pci', version: '2.0.0', pci: { 'pci-address': 'a' } }, /version: "2.0.0"/],
      [{ type: 'pci', pci: { 'pci-address': 'a' } }, /version: undefined/],
      [{ type: 'pci', version: '1.1.0' }, /pci: missing; type "pci" needs a "pci" map/],
      [{ type: 'pci', version: '1.1.0', pci: {} }, /pci.pci-address: missing/],
      [
        { type: 'vdpa', version: '1.1.0', vdpa: { 'parent-device': 'v', driver: 'x', path: '/p' } },
        /vdpa.driver: "x"/,
      ],
      [
        { type: 'vhost-user', version: '1.1.0', 'vhost-user': { mode: 'client' } },
        /vhost-user.path: missing/,
      ],
      [
        { type: 'memif', version: '1.1.0', memif: { role: 'master', path: '/p', mode: 'l2' } },
        /memif.mode: "l2"/,
      ],
    ];
    for (const [doc, msg] of cases) {
      const e = err(() => parseDeviceInfo(doc, 'where'));
      expect(e.code).toBe(6);
      expect(e.message).toMatch(/^where: /);
      expect(e.message).toMatch(msg);
    }
  });

  it('PCI addresses are recognised in BDF form with a domain', () => {
    for (const a of ['0000:03:02.1', '0000:af:00.7', '10000:00:1f.0']) expect(isPciAddress(a)).toBe(true);
    for (const a of ['03:02.1', '0000:03:02.8', 'mlx5_core.sf.4', '', 'eth0'])
      expect(isPciAddress(a)).toBe(false);
  });
});

describe('device-info files', () => {
  it('round-trip: written atomically (creating the directory), read back checked, removed idempotently', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.tuple(
          fc.integer({ min: 0, max: 0xffff }),
          fc.integer({ min: 0, max: 255 }),
          fc.integer({ min: 0, max: 31 }),
          fc.integer({ min: 0, max: 7 }),
        ),
        async ([d, b, s, f]) => {
          const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');
          const addr = `${hex(d, 4)}:${hex(b, 2)}:${hex(s, 2)}.${f}`;
          const path = cniDeviceInfoPath('ns/net', `c${d}`, 'net1', join(work, 'rt'));
          await writeDeviceInfo(path, pciDeviceInfo(addr));
          expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({
            type: 'pci',
            version: '1.1.0',
            pci: { 'pci-address': addr },
          });
          expect(await readDeviceInfo(path)).toEqual(pciDeviceInfo(addr));
          await removeDeviceInfo(path);
          await removeDeviceInfo(path);
          expect(await readDeviceInfo(path)).toBeUndefined();
        },
      ),
      { numRuns: 30 },
    );
    expect(statSync(join(work, 'rt', 'cni')).mode & 0o777).toBe(0o755);
    expect(readdirSync(join(work, 'rt', 'cni'))).toEqual([]);
  });

  it('copies the device plugin file to the attachment file, and reports when there is none', async () => {
    const dir = join(work, 'copy');
    const dp = dpDeviceInfoPath('intel.com/sriov', '0000:03:02.1', dir);
    mkdirSync(join(dir, 'dp'), { recursive: true });
    const doc = {
      type: 'pci',
      version: '1.1.0',
      pci: { 'pci-address': '0000:03:02.1', 'rdma-device': 'mlx5_3' },
    };
    writeFileSync(dp, JSON.stringify(doc));
    const cni = cniDeviceInfoPath('default/sriov', 'ctr', 'net1', dir);
    expect(await copyDpDeviceInfo('intel.com/sriov', '0000:03:02.1', cni, dir)).toBe(true);
    expect(JSON.parse(readFileSync(cni, 'utf8'))).toEqual(doc);
    expect(await copyDpDeviceInfo('intel.com/sriov', '0000:03:02.2', join(dir, 'cni', 'other'), dir)).toBe(
      false,
    );
    expect(readdirSync(join(dir, 'cni'))).toEqual([basename(cni)]);
  });

  it('a file that is not device information fails with code 6 naming the file', async () => {
    const path = join(work, 'bad.json');
    writeFileSync(path, '{"type": "pci"');
    await expect(readDeviceInfo(path)).rejects.toMatchObject({
      code: 6,
      message: expect.stringContaining(`${path}: not JSON`),
    });
    writeFileSync(path, '{"type": "pci", "version": "1.1.0"}');
    await expect(readDeviceInfo(path)).rejects.toMatchObject({
      message: expect.stringContaining('pci: missing'),
    });
  });
});
