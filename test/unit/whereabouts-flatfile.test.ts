// whereabouts' flat file and the store it resolves (issue 11 item 2), its logging and controller
// fields, and the failures that must leave nothing held (F6: a 300-character container ID, F7: a bad
// CNI_ARGS IP). The flat file is given through `configuration_path` (or the search list, which the
// binary test in test/integration/whereabouts-flatfile.test.ts covers through a private mount
// namespace): nothing here reads or writes the machine's /etc.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { boundedFileName, MAX_FILE_NAME } from '../../src/fs/index.js';
import { mergeFlatFile, parseWhereaboutsConfig } from '../../src/ipam/whereabouts/config.js';
import { createWhereaboutsAllocator } from '../../src/ipam/whereabouts/index.js';
import { CniError } from '../../src/spec/errors.js';
import { cniErrorOf } from '../helpers/errors.js';

const tmp = mkdtempSync(join(tmpdir(), `wbflat-${process.pid}-`));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
/** Writes a flat file of its own and returns its path. */
function flatFile(content: unknown): string {
  const p = join(tmp, `flat-${n++}.conf`);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}
/** A search list that finds nothing (the machine's /etc is never consulted here). */
const NOWHERE = [join(tmp, 'absent', 'whereabouts.conf')];
const parse = (ipam: Record<string, unknown>) =>
  parseWhereaboutsConfig({ type: 'whereabouts', ...ipam }, { flatFilePaths: NOWHERE });
const netconf = (ipam: Record<string, unknown>) => ({
  cniVersion: '1.0.0',
  name: 'wbflat',
  ipam: { type: 'whereabouts', ...ipam },
});
const alloc = (ipam: Record<string, unknown>) =>
  createWhereaboutsAllocator(netconf(ipam), { flatFilePaths: NOWHERE });

async function rejected(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a rejection');
}

/** Every file under `dir` (relative paths), skipping the by-design lock and cursor files. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${rel}${e.name}/`);
      else if (e.name !== 'lock' && e.name !== 'cursor') out.push(`${rel}${e.name}`);
    }
  };
  walk(dir, '');
  return out;
}

describe('whereabouts flat file', () => {
  it('inline values that are set win, unset/empty/zero ones come from the flat file, objects merge per key', () => {
    const path = flatFile({
      datastore: 'kubernetes',
      kubernetes: {
        kubeconfig: '/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig',
        k8s_api_root: 'https://flat',
      },
      range: '10.1.0.0/24',
      gateway: '10.2.0.1',
      exclude: ['10.2.0.0/30'],
      network_name: 'flatnet',
      enable_overlapping_ranges: false,
      log_file: join(tmp, 'flat.log'),
      log_level: 'error',
      reconciler_cron_expression: '30 4 * * *',
    });
    const cfg = parse({
      configuration_path: path,
      range: '10.2.0.0/24',
      network_name: '',
      exclude: [],
      kubernetes: { k8s_api_root: 'https://inline' },
    });
    // range set inline wins; network_name "" and exclude [] are unset and come from the file.
    expect(cfg.ranges.map((r) => r.ref.pool)).toEqual(['flatnet-10.2.0.0-24']);
    expect(cfg.ranges[0]!.exclude).toEqual(['10.2.0.0/30']);
    expect(cfg.gateway).toMatchObject({ family: 4 });
    expect(cfg.datastore).toEqual({
      kind: 'kubernetes',
      kubeconfig: '/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig',
      k8s_api_root: 'https://inline',
    });
    // enable_overlapping_ranges is always the inline value (default true), never the file's.
    expect(cfg.enableOverlappingRanges).toBe(true);
    expect(cfg.log).toEqual({ file: join(tmp, 'flat.log'), level: 'error' });
    expect(cfg.controllerFields).toEqual({ reconciler_cron_expression: '30 4 * * *' });
    expect(cfg.flat.path).toBe(path);
  });

  it("the merge is whereabouts' rule for every field (property)", () => {
    const value = fc.oneof(
      fc.constant(undefined),
      fc.constant(''),
      fc.constant(0),
      fc.constant(false),
      fc.constant([]),
      fc.string({ minLength: 1, maxLength: 4 }),
      fc.integer({ min: 1, max: 9 }),
      fc.constant(true),
    );
    const obj = fc.dictionary(fc.constantFrom('a', 'b', 'c', 'enable_overlapping_ranges'), value);
    fc.assert(
      fc.property(obj, obj, (inline, flat) => {
        const zero = (v: unknown) =>
          v === undefined || v === '' || v === 0 || v === false || (Array.isArray(v) && v.length === 0);
        const m = mergeFlatFile(inline, flat);
        for (const k of new Set([...Object.keys(inline), ...Object.keys(flat)])) {
          const want =
            k === 'enable_overlapping_ranges'
              ? inline[k]
              : zero(inline[k]) && !zero(flat[k])
                ? flat[k]
                : inline[k];
          expect(m[k]).toEqual(want);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('the first existing file of configuration_path and the search list is read; a missing configuration_path falls through', () => {
    const a = flatFile({ datastore: 'file', data_dir: join(tmp, 'a') });
    const b = flatFile({ datastore: 'file', data_dir: join(tmp, 'b') });
    const cfg = parseWhereaboutsConfig(
      { type: 'whereabouts', range: '10.3.0.0/24', configuration_path: join(tmp, 'missing.conf') },
      { flatFilePaths: [join(tmp, 'nope.conf'), a, b] },
    );
    expect(cfg.flat.path).toBe(a);
    expect(cfg.datastore).toEqual({ kind: 'file', dir: join(tmp, 'a') });
    expect(cfg.flat.missingConfigurationPath).toBe(join(tmp, 'missing.conf'));
    const first = parseWhereaboutsConfig(
      { type: 'whereabouts', range: '10.3.0.0/24', configuration_path: b },
      { flatFilePaths: [a] },
    );
    expect(first.datastore).toEqual({ kind: 'file', dir: join(tmp, 'b') });
  });

  it('the store: named by datastore (inline or flat), else Kubernetes, else none; never a silent file store', () => {
    expect(parse({ range: '10.4.0.0/24', datastore: 'file', data_dir: '/d' }).datastore).toEqual({
      kind: 'file',
      dir: '/d',
    });
    expect(
      parse({ range: '10.4.0.0/24', configuration_path: flatFile({ datastore: 'file' }) }).datastore,
    ).toEqual({ kind: 'file', dir: '/var/lib/cni/whereabouts' });
    expect(
      parse({
        range: '10.4.0.0/24',
        configuration_path: flatFile({ datastore: 'etcd', etcd_host: 'http://e:2379', etcd_username: 'u' }),
      }).datastore,
    ).toEqual({ kind: 'etcd', etcd_host: 'http://e:2379', etcd_username: 'u' });
    expect(parse({ range: '10.4.0.0/24', kubernetes: { kubeconfig: '/k' } }).datastore).toEqual({
      kind: 'kubernetes',
      kubeconfig: '/k',
    });
    for (const ipam of [{ range: '10.4.0.0/24' }, { range: '10.4.0.0/24', datastore: 'kubernetes' }]) {
      const ds = parse(ipam).datastore;
      expect(ds.kind).toBe('none');
    }
  });

  it('ADD without a resolvable store fails with code 7 naming the files searched and the fields to set; DEL succeeds', async () => {
    // The most common NAD, with no flat file anywhere.
    const a = alloc({ range: '192.168.2.0/24' });
    const e = await rejected(a.allocate({ containerId: 'c1', ifname: 'net1' }));
    expect(e.code).toBe(7);
    expect(e.message).toContain('ipam.kubernetes.kubeconfig');
    expect(e.message).toContain(NOWHERE[0]!);
    expect(e.message).toContain('/etc/cni/net.d/whereabouts.d/whereabouts.conf');
    expect(e.message).toMatch(/"datastore": "etcd"/);
    expect(e.message).toMatch(/"datastore": "file"/);
    await a.release({ containerId: 'c1', ifname: 'net1' });
    // A flat file without a kubeconfig is named as read.
    const path = flatFile({ log_level: 'debug' });
    const e2 = await rejected(
      alloc({ range: '192.168.2.0/24', configuration_path: path }).allocate({
        containerId: 'c',
        ifname: 'e',
      }),
    );
    expect(e2.message).toContain(`${path} was read but sets no kubernetes.kubeconfig`);
    // STATUS and CHECK fail the same way.
    expect((await rejected(a.status())).message).toContain('ipam.kubernetes.kubeconfig');
  });

  it('DEL without a store frees what the node-local default of earlier versions held', async () => {
    const old = join(tmp, 'legacy-default');
    await alloc({ range: '10.13.0.0/24', datastore: 'file', data_dir: old }).allocate({
      containerId: 'old',
      ifname: 'net1',
    });
    expect(filesUnder(old).length).toBeGreaterThan(0);
    const now = createWhereaboutsAllocator(netconf({ range: '10.13.0.0/24' }), {
      flatFilePaths: NOWHERE,
      legacyFileDir: old,
    });
    await now.release({ containerId: 'old', ifname: 'net1' });
    expect(filesUnder(old)).toEqual([]);
  });

  it('a flat file that is not a JSON object is code 7 naming it', () => {
    for (const bad of ['{"datastore":', '[1]', '"x"']) {
      const p = flatFile(bad);
      const e = cniErrorOf(() => parse({ range: '10.5.0.0/24', configuration_path: p }));
      expect(e.code).toBe(7);
      expect(e.message).toContain(`whereabouts flat file ${p}`);
    }
  });

  it('node_slice_size is read inline or from the flat file, and refused by name on a store without slices', () => {
    expect(parse({ range: '10.6.0.0/24', node_slice_size: '/26' }).nodeSliceSize).toBe(26);
    expect(
      parse({ range: '10.6.0.0/24', configuration_path: flatFile({ node_slice_size: '28' }) }).nodeSliceSize,
    ).toBe(28);
    for (const ipam of [
      { range: '10.6.0.0/24', datastore: 'file', node_slice_size: '/26' },
      { range: '10.6.0.0/24', configuration_path: flatFile({ datastore: 'file', node_slice_size: '/28' }) },
    ]) {
      const e = cniErrorOf(() => parse(ipam));
      expect(e.code).toBe(7);
      expect(e.message).toMatch(/ipam\.node_slice_size: "\/2[68]" needs the Kubernetes store/);
    }
    expect(parse({ range: '10.6.0.0/24', node_slice_size: '' }).nodeSliceSize).toBeUndefined();
  });

  it('controller fields are accepted, type-checked and logged; log_level filters what log_file gets', async () => {
    const log = join(tmp, 'wb.log');
    const data = join(tmp, 'logstore');
    const ipam = {
      range: '10.7.0.0/24',
      datastore: 'file',
      data_dir: data,
      log_file: log,
      log_level: 'verbose',
      reconciler_cron_expression: '30 4 * * *',
      leader_lease_duration: 1500,
      leader_renew_deadline: 1000,
      leader_retry_period: 500,
      sleep_for_race: 1,
    };
    const a = alloc(ipam);
    await a.allocate({ containerId: 'c1', ifname: 'net1' });
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    for (const l of lines) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \[(verbose|error|panic)\] /);
    for (const f of ['reconciler_cron_expression', 'leader_lease_duration', 'sleep_for_race']) {
      expect(lines.some((l) => l.includes(`ipam.${f}:`) && l.includes('accepted'))).toBe(true);
    }
    expect(lines.some((l) => l.includes('[debug]'))).toBe(false);
    // At debug, ADD and DEL are logged with the attachment; at error, only failures.
    rmSync(log);
    const d = alloc({ ...ipam, log_level: 'debug' });
    await d.release({ containerId: 'c1', ifname: 'net1' });
    expect(readFileSync(log, 'utf8')).toMatch(/\[debug\] DEL: ContainerID "c1", ifName "net1"/);
    rmSync(log);
    const quiet = alloc({
      ...ipam,
      log_level: 'error',
      range: '10.7.0.0/30',
      exclude: ['10.7.0.1', '10.7.0.2'],
    });
    await rejected(quiet.allocate({ containerId: 'c2', ifname: 'net1' }));
    const errs = readFileSync(log, 'utf8').trim().split('\n');
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatch(/\[error\] ADD: c2\/net1 failed: .*no free address/);
    const e = cniErrorOf(() => parse({ range: '10.7.0.0/24', leader_lease_duration: 'soon' }));
    expect(e.message).toContain('ipam.leader_lease_duration');
  });
});

describe('failed ADDs hold nothing (F6, F7)', () => {
  it('F7: a CNI_ARGS IP that is not a CIDR fails with code 7 before anything is claimed', async () => {
    const data = join(tmp, 'f7');
    const a = alloc({ range: '10.8.0.0/24', datastore: 'file', data_dir: data });
    for (const ip of ['10.9.0.5', '10.9.0.x/24']) {
      const e = await rejected(a.allocate({ containerId: 'f7', ifname: 'net1', args: [['IP', ip]] }));
      expect(e.code).toBe(7);
      expect(e.message).toContain('CNI_ARGS IP');
      expect(e.message).toContain(ip);
      expect(filesUnder(data)).toEqual([]);
    }
    // GATEWAY= applies to the CNI_ARGS addresses whose subnet holds it, as whereabouts does.
    const ok = await a.allocate({
      containerId: 'f7',
      ifname: 'net1',
      args: [
        ['IP', '10.9.0.5/24,fd09::5/64'],
        ['GATEWAY', '10.9.0.1'],
      ],
    });
    expect(ok.ips?.slice(1)).toEqual([
      { address: '10.9.0.5/24', gateway: '10.9.0.1' },
      { address: 'fd09::5/64' },
    ]);
    await a.release({ containerId: 'f7', ifname: 'net1' });
    expect(filesUnder(data)).toEqual([]);
  });

  it('a repeated ADD that fails in a later range keeps what the attachment already held', async () => {
    const data = join(tmp, 'readd');
    const store = { datastore: 'file', data_dir: data };
    const pod: Array<[string, string]> = [
      ['K8S_POD_NAMESPACE', 'ns'],
      ['K8S_POD_NAME', 'web-0'],
    ];
    const first = alloc({ ...store, range: '10.14.0.0/24', ipRanges: [{ range: '10.15.0.0/24' }] });
    const held = await first.allocate({ containerId: 'c1', ifname: 'net1', args: pod });
    // A full /30 for the second range of a changed config.
    const full = alloc({ ...store, range: '10.16.0.0/30' });
    await full.allocate({ containerId: 'x1', ifname: 'net1' });
    await full.allocate({ containerId: 'x2', ifname: 'net1' });
    const changed = alloc({ ...store, range: '10.14.0.0/24', ipRanges: [{ range: '10.16.0.0/30' }] });
    const e = await rejected(changed.allocate({ containerId: 'c1', ifname: 'net1', args: pod }));
    expect(e.message).toContain('no free address in 10.16.0.0/30');
    // The first range's address is still c1's, with its indexes.
    const again = await first.allocate({ containerId: 'c1', ifname: 'net1', args: pod });
    expect(again.ips).toEqual(held.ips);
    await first.check({ containerId: 'c1', ifname: 'net1' });
  });

  it('F6: a 300-character container ID (and pod name) allocates, is found again, and DEL frees everything', async () => {
    const data = join(tmp, 'f6');
    const a = alloc({ range: '10.10.0.0/24', datastore: 'file', data_dir: data });
    const id = 'c'.repeat(300);
    const args: Array<[string, string]> = [
      ['K8S_POD_NAMESPACE', 'n'.repeat(63)],
      ['K8S_POD_NAME', 'p'.repeat(253)],
    ];
    const r = await a.allocate({ containerId: id, ifname: 'net1', args });
    expect((await a.allocate({ containerId: id, ifname: 'net1', args })).ips).toEqual(r.ips);
    // A different long ID sharing the first 200 characters is a different attachment.
    const other = await a.allocate({ containerId: `${'c'.repeat(299)}d`, ifname: 'net1' });
    expect(other.ips).not.toEqual(r.ips);
    await a.check({ containerId: id, ifname: 'net1' });
    await a.release({ containerId: id, ifname: 'net1', args });
    await a.release({ containerId: `${'c'.repeat(299)}d`, ifname: 'net1' });
    expect(filesUnder(data)).toEqual([]);
  });

  it('F6: GC keeps the hashed indexes of long names and sweeps only dangling ones', async () => {
    const data = join(tmp, 'f6gc');
    const a = alloc({ range: '10.12.0.0/24', datastore: 'file', data_dir: data });
    const id = 'g'.repeat(300);
    const args: Array<[string, string]> = [
      ['K8S_POD_NAMESPACE', 'sts'],
      ['K8S_POD_NAME', 'p'.repeat(253)],
    ];
    const r = await a.allocate({ containerId: id, ifname: 'net1', args });
    // A dangling index a dead writer left (pid above pid_max), pointing at an address nobody holds.
    const owners = join(data, 'pools', '10.12.0.0-24', 'owners');
    writeFileSync(join(owners, 'dead%0Anet1'), '10.12.0.200\n4194305');
    await a.gc([{ containerId: id, ifname: 'net1' }]);
    expect(readdirSync(owners)).toHaveLength(1);
    // The pod index survived: the StatefulSet pod re-created under a new container ID keeps its address.
    const again = await a.allocate({ containerId: `${id}2`, ifname: 'net1', args });
    expect(again.ips).toEqual(r.ips);
    await a.release({ containerId: `${id}2`, ifname: 'net1', args });
    expect(filesUnder(data)).toEqual([]);
  });

  it('boundedFileName: short names unchanged, long ones bounded and distinct (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), fc.string({ maxLength: 400 }), (x, y) => {
        const bx = boundedFileName(x);
        expect(Buffer.byteLength(bx)).toBeLessThanOrEqual(MAX_FILE_NAME);
        expect(bx.includes('/')).toBe(false);
        if (Buffer.byteLength(x) <= MAX_FILE_NAME && !x.includes('/') && x !== '' && x !== '.' && x !== '..')
          expect(bx).toBe(x);
        if (x !== y) expect(bx).not.toBe(boundedFileName(y));
      }),
      { numRuns: 500 },
    );
  });

  it("stray temp files of dead writers are removed by the next open of the store; a live writer's stay", async () => {
    const data = join(tmp, 'f10');
    const a = alloc({ range: '10.11.0.0/24', datastore: 'file', data_dir: data });
    await a.allocate({ containerId: 'x', ifname: 'net1' });
    // A pid that cannot be running (above pid_max) and ours (a live writer).
    const dead = join(data, 'tmp', '.tmp.10.11.0.2.4194305.abcdef');
    const live = join(data, 'tmp', `.tmp.10.11.0.3.${process.pid}.abcdef`);
    mkdirSync(join(data, 'tmp'), { recursive: true });
    writeFileSync(dead, '{}');
    writeFileSync(live, '{}');
    // A new process opens the store for the DEL.
    await alloc({ range: '10.11.0.0/24', datastore: 'file', data_dir: data }).release({
      containerId: 'x',
      ifname: 'net1',
    });
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
    rmSync(live);
    expect(filesUnder(data)).toEqual([]);
  });
});
