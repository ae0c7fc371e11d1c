// ctx.ipam pass-through: an IPAM type that is not served in-process (a type with no built-in
// allocator, or a built-in type whose binary on CNI_PATH is not cni-kit's own) is exec'd from
// CNI_PATH with the runtime's stdin byte for byte: same key order and whitespace, unknown fields
// kept, nothing injected (the regression: bridge handed IPAM a re-serialised config with
// "vlanTrunk":[100,200,201] and its own defaults added). A fake IPAM script keeps every stdin it is
// given, and each case compares those texts, as strings, with the ones the test sent for ADD, CHECK
// and DEL. Real binaries (dist/bin) run in a "node" netns the test creates, with a "pod" netns as
// CNI_NETNS; ipvlan, vlan and bridge with vlanTrunk also run in-process on the memory backend.
// Controls: a foreign host-local earlier on CNI_PATH is exec'd the same way; cni-kit's own is not.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type PluginOutcome, type PluginSpec, runPlugin } from 'cni-kit';
import { type MemoryNetlink, memoryNetlink } from 'cni-kit/netlink';
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { createBridgePlugin } from '../../examples/bridge/plugin.js';
import { createIpvlanPlugin } from '../../examples/ipvlan/plugin.js';
import { createVlanPlugin } from '../../examples/vlan/plugin.js';
import { pluginDir } from '../helpers/mode.js';
import { BIN_DIR } from '../helpers/plugin.js';

const tag = `ckip${process.pid % 100000}`;
let work = '';
/** Netns created by the running test; removed after it, whatever happened. */
const netnses: string[] = [];

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), `${tag}-`));
});
afterEach(() => {
  for (const ns of netnses.splice(0)) spawnSync('ip', ['netns', 'del', ns]);
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A fresh directory under the file's temp dir. */
const freshDir = (prefix: string) => mkdtempSync(join(work, `${prefix}-`));

/** One IPAM call as the fake plugin saw it. */
interface IpamCall {
  command: string;
  stdin: string;
}

interface FakeIpam {
  /** The directory holding the fake plugin: put it on CNI_PATH. */
  dir: string;
  /** The address the fake hands out on ADD. */
  address: string;
  gateway: string;
  /** Every call so far, in order. */
  calls(): IpamCall[];
}

/**
 * Writes a fake IPAM plugin named `type` (a shell script, so it carries no cni-kit marker) into a
 * new directory. Each call's stdin goes to its own numbered file named after CNI_COMMAND; ADD
 * prints a result with 10.77.<octet>.5/24, every other command prints nothing.
 */
function fakeIpam(type: string, octet: number): FakeIpam {
  const dir = freshDir(`${type}-bin`);
  const rec = freshDir(`${type}-rec`);
  const address = `10.77.${octet}.5/24`;
  const gateway = `10.77.${octet}.1`;
  const result = JSON.stringify({
    cniVersion: '1.0.0',
    ips: [{ address, gateway }],
    routes: [{ dst: '0.0.0.0/0' }],
  });
  const script = [
    '#!/bin/sh',
    '# fake IPAM plugin of ipam-passthrough.test.ts: keeps each stdin, answers ADD with a fixed result',
    `rec='${rec}'`,
    'n=$(ls "$rec" | wc -l)',
    'cat > "$rec/$(printf %03d $((n + 1))).$CNI_COMMAND"',
    `if [ "$CNI_COMMAND" = ADD ]; then printf '%s\\n' '${result}'; fi`,
    'exit 0',
    '',
  ].join('\n');
  writeFileSync(join(dir, type), script);
  chmodSync(join(dir, type), 0o755);
  return {
    dir,
    address,
    gateway,
    calls: () =>
      readdirSync(rec)
        .sort()
        .map((f) => ({ command: f.slice(f.indexOf('.') + 1), stdin: readFileSync(join(rec, f), 'utf8') })),
  };
}

/**
 * A config as a hand-written file may look, so that any re-serialisation shows: keys out of the
 * usual order, odd spacing and newlines, a vendor field nobody knows, a literal non-ASCII character
 * and a \u escape (JSON.stringify would turn it into the character). `own` is the plugin's fields,
 * each line ending in a comma; `ipam` the inside of the ipam object.
 */
function confText(type: string, own: string, ipam: string): string {
  return [
    '{',
    '  "x-vendor" :{ "keep": [1, 2],\t"note": "café \\u2713" },',
    `  "type":"${type}",   "ipam": { ${ipam}, "x-ipam": {"z": 1, "a": 2} },`,
    own,
    `  "name": "${tag}-${type}",`,
    '  "cniVersion" : "1.0.0"',
    '}',
    '',
  ].join('\n');
}

/** The CHECK/DEL config a runtime sends after ADD: the same text with the ADD result as prevResult. */
const withPrevResult = (text: string, addStdout: string) =>
  text.replace('{', `{ "prevResult": ${addStdout.trimEnd()},`);

type Command = 'ADD' | 'CHECK' | 'DEL';
type Runner = (command: Command, stdin: string) => Promise<PluginOutcome> | PluginOutcome;

interface AddResult {
  interfaces: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips: Array<{ interface?: number; address: string; gateway?: string }>;
}

/**
 * ADD, CHECK (prevResult = the ADD result) and DEL (with prevResult too, as libcni sends it for
 * 1.0.0), each expected to succeed. `afterAdd` runs between ADD and CHECK. Returns the ADD result
 * and the calls IPAM must have seen: exactly the texts sent.
 */
async function addCheckDel(
  run: Runner,
  text: string,
  afterAdd: (r: AddResult) => unknown = () => {},
): Promise<{ result: AddResult; sent: IpamCall[] }> {
  const add = await run('ADD', text);
  expect(add.exitCode, add.stdout + add.stderr).toBe(0);
  const result = JSON.parse(add.stdout) as AddResult;
  await afterAdd(result);
  const later = withPrevResult(text, add.stdout);
  const check = await run('CHECK', later);
  expect(check.exitCode, check.stdout + check.stderr).toBe(0);
  const del = await run('DEL', later);
  expect(del.exitCode, del.stdout + del.stderr).toBe(0);
  return {
    result,
    sent: [
      { command: 'ADD', stdin: text },
      { command: 'CHECK', stdin: later },
      { command: 'DEL', stdin: later },
    ],
  };
}

describe('real binaries in network namespaces: IPAM gets the runtime stdin byte for byte', () => {
  function need(ctx: TestContext): void {
    if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
  }

  /** A "node" netns (the plugin's host) and a "pod" netns, removed after the test. */
  function nodeAndPod(name: string): { node: string; pod: string } {
    const node = `${tag}-${name}-n`;
    const pod = `${tag}-${name}-p`;
    for (const ns of [node, pod]) {
      spawnSync('ip', ['netns', 'del', ns]);
      netnses.push(ns);
      execFileSync('ip', ['netns', 'add', ns]);
    }
    return { node, pod };
  }

  /** Runs dist/bin/<type> inside the node netns, as a runtime would exec it. */
  function binary(type: string, node: string, pod: string, cniPath: string): Runner {
    return (command, stdin) => {
      const r = spawnSync('ip', ['netns', 'exec', node, join(pluginDir(node), type)], {
        input: stdin,
        encoding: 'utf8',
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          CNI_COMMAND: command,
          CNI_CONTAINERID: `${tag}-${type}`,
          CNI_NETNS: `/var/run/netns/${pod}`,
          CNI_IFNAME: 'eth0',
          CNI_PATH: cniPath,
        },
      });
      return { exitCode: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    };
  }

  /** The IPv4 addresses of eth0 in the pod, read back through iproute2. */
  function podAddresses(pod: string): string[] {
    const links = JSON.parse(
      execFileSync('ip', ['-n', pod, '-j', '-4', 'addr', 'show', 'dev', 'eth0'], { encoding: 'utf8' }),
    ) as Array<{
      addr_info: Array<{ local: string; prefixlen: number }>;
    }>;
    return links.flatMap((l) => l.addr_info.map((a) => `${a.local}/${a.prefixlen}`));
  }

  /**
   * ADD, CHECK and DEL through the binary: IPAM saw exactly the texts sent, and the pod's eth0 got
   * the fake's address, listed on result interface `index`.
   */
  async function expectPassThrough(run: Runner, text: string, pod: string, ipam: FakeIpam, index: number) {
    const { result, sent } = await addCheckDel(run, text, () => {
      expect(podAddresses(pod)).toEqual([ipam.address]);
    });
    expect(result.ips).toEqual([{ interface: index, address: ipam.address, gateway: ipam.gateway }]);
    expect(ipam.calls()).toEqual(sent);
  }

  it('bridge (vlanTrunk too when the kernel filters bridge VLANs, no defaults set)', async (ctx) => {
    need(ctx);
    const { node, pod } = nodeAndPod('br');
    const ipam = fakeIpam('fakeipam', 1);
    const probe = spawnSync('ip', [
      '-n',
      node,
      'link',
      'add',
      `${tag}vp`,
      'type',
      'bridge',
      'vlan_filtering',
      '1',
    ]);
    const vlans = probe.status === 0;
    if (!vlans)
      await ctx.annotate('this kernel has no bridge VLAN filtering: the binary run has no vlanTrunk');
    const own = [
      `  "bridge":"${tag}b0",`,
      ...(vlans ? ['  "vlanTrunk":[{"id":100},{"minID":200,"maxID":201}],'] : []),
    ];
    const text = confText('bridge', own.join('\n'), '"type": "fakeipam"');
    const run = binary('bridge', node, pod, `${ipam.dir}:${pluginDir(node)}`);
    await expectPassThrough(run, text, pod, ipam, 2);
  });

  it('macvlan on a veth master inside the node netns', async (ctx) => {
    need(ctx);
    const { node, pod } = nodeAndPod('mv');
    const master = `${tag}m0`;
    execFileSync('ip', ['-n', node, 'link', 'add', master, 'type', 'veth', 'peer', 'name', `${tag}m1`]);
    execFileSync('ip', ['-n', node, 'link', 'set', master, 'up']);
    execFileSync('ip', ['-n', node, 'link', 'set', `${tag}m1`, 'up']);
    const ipam = fakeIpam('fakeipam', 2);
    const text = confText(
      'macvlan',
      `  "mode": "bridge",\n    "master" : "${master}",`,
      '"type": "fakeipam"',
    );
    const run = binary('macvlan', node, pod, `${ipam.dir}:${pluginDir(node)}`);
    await expectPassThrough(run, text, pod, ipam, 0);
  });

  it('ptp', async (ctx) => {
    need(ctx);
    const { node, pod } = nodeAndPod('ptp');
    const ipam = fakeIpam('fakeipam', 3);
    const text = confText('ptp', '  "mtu": 1400,', '"type": "fakeipam"');
    const run = binary('ptp', node, pod, `${ipam.dir}:${pluginDir(node)}`);
    await expectPassThrough(run, text, pod, ipam, 1);
  });

  it('host-device moving one end of a veth pair from the node netns', async (ctx) => {
    need(ctx);
    const { node, pod } = nodeAndPod('hd');
    const device = `${tag}h0`;
    execFileSync('ip', ['-n', node, 'link', 'add', device, 'type', 'veth', 'peer', 'name', `${tag}h1`]);
    const ipam = fakeIpam('fakeipam', 4);
    const text = confText('host-device', `  "device":"${device}",`, '"type": "fakeipam"');
    const run = binary('host-device', node, pod, `${ipam.dir}:${pluginDir(node)}`);
    await expectPassThrough(run, text, pod, ipam, 0);
    // DEL gave the device back to the node under its own name.
    expect(spawnSync('ip', ['-n', node, 'link', 'show', device]).status).toBe(0);
  });
});

describe("in-process on the memory backend, the fake IPAM exec'd for real", () => {
  const POD = `/var/run/netns/${tag}-mem`;

  function memory(): MemoryNetlink {
    const nl = memoryNetlink({ hostLinks: ['eth0'] });
    nl.addNetns(POD);
    return nl;
  }

  /** Runs the plugin through runPlugin with the env a runtime would set. */
  function inProcess<C>(
    plugin: PluginSpec<C>,
    cniPath: string,
    extraEnv: Record<string, string> = {},
  ): Runner {
    return (command, stdin) =>
      runPlugin(plugin, {
        env: {
          CNI_COMMAND: command,
          CNI_CONTAINERID: `${tag}-ctr`,
          CNI_NETNS: POD,
          CNI_IFNAME: 'eth0',
          CNI_PATH: cniPath,
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          ...extraEnv,
        },
        stdin,
      });
  }

  it('ipvlan', async () => {
    const nl = memory();
    const ipam = fakeIpam('fakeipam', 11);
    const text = confText('ipvlan', '  "mode":"l2",   "master": "eth0",', '"type": "fakeipam"');
    const { result, sent } = await addCheckDel(
      inProcess(createIpvlanPlugin({ netlink: nl }), ipam.dir),
      text,
      () => {
        expect(nl.inspect(POD).links.find((l) => l.name === 'eth0')).toMatchObject({ kind: 'ipvlan' });
      },
    );
    expect(result.ips).toEqual([{ interface: 0, address: ipam.address, gateway: ipam.gateway }]);
    expect(ipam.calls()).toEqual(sent);
  });

  it('vlan', async () => {
    const nl = memory();
    const ipam = fakeIpam('fakeipam', 12);
    const text = confText('vlan', '  "vlanId" : 42,\n  "master": "eth0",', '"type": "fakeipam"');
    const { result, sent } = await addCheckDel(
      inProcess(createVlanPlugin({ netlink: nl }), ipam.dir),
      text,
      () => {
        expect(nl.inspect(POD).links.find((l) => l.name === 'eth0')).toMatchObject({
          kind: 'vlan',
          vlanId: 42,
        });
      },
    );
    expect(result.ips).toEqual([{ interface: 0, address: ipam.address, gateway: ipam.gateway }]);
    expect(ipam.calls()).toEqual(sent);
  });

  it('bridge with the vlanTrunk config of the regression (no defaults set)', async () => {
    const nl = memory();
    const ipam = fakeIpam('fakeipam', 13);
    // The exact text of the bug report.
    const text =
      '{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"br9","vlanTrunk":[{"id":100},{"minID":200,"maxID":201}],"ipam":{"type":"fakeipam"}}';
    // And the same config written the way that shows any re-serialisation.
    const odd = confText(
      'bridge',
      '  "vlanTrunk":[ {"id":100}, {"minID":200,"maxID":201} ],\n  "bridge": "br9",',
      '"type": "fakeipam"',
    );
    const run = inProcess(createBridgePlugin({ netlink: nl }), ipam.dir);
    const trunkOfPort = async (r: AddResult) => {
      // The plugin did parse vlanTrunk for itself: the container's port is a trunk of 100, 200, 201.
      const port = r.interfaces[1]?.name ?? '';
      expect(await nl.inNetns(undefined, (ns) => ns.bridgeVlans(port))).toEqual(
        expect.arrayContaining([100, 200, 201].map((vid) => ({ vid, pvid: false, untagged: false }))),
      );
    };
    const first = await addCheckDel(run, text, trunkOfPort);
    const second = await addCheckDel(run, odd, trunkOfPort);
    expect(first.result.ips).toEqual([{ interface: 2, address: ipam.address, gateway: ipam.gateway }]);
    expect(ipam.calls()).toEqual([...first.sent, ...second.sent]);
  });

  describe('controls: which host-local runs', () => {
    /**
     * A tripwire for exec'd cni-kit binaries (they are Node programs): NODE_OPTIONS in the call's
     * env makes any node process started from it append its CNI_COMMAND and script to `log`.
     * The in-process plugin never reads it; only a child would.
     */
    function tripwire(): { env: Record<string, string>; hits(): string[] } {
      const dir = freshDir('tripwire');
      const log = join(dir, 'hits');
      const hook = join(dir, 'hook.cjs');
      writeFileSync(
        hook,
        `require('node:fs').appendFileSync(${JSON.stringify(log)}, process.env.CNI_COMMAND + ' ' + process.argv[1] + '\\n');\n`,
      );
      return {
        env: { NODE_OPTIONS: `--require ${hook}` },
        hits: () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []),
      };
    }

    /** A host-local ipam block with a fresh data dir; returns it and where host-local keeps reservations. */
    function hostLocal(octet: number): { ipam: string; reservations: string } {
      const dataDir = freshDir('host-local-data');
      return {
        ipam: `"type": "host-local", "subnet": "10.77.${octet}.0/24", "dataDir": ${JSON.stringify(dataDir)}`,
        reservations: join(dataDir, `${tag}-bridge`),
      };
    }

    it("a foreign host-local (no cni-kit marker) earlier on CNI_PATH is exec'd with the exact bytes", async () => {
      const nl = memory();
      const foreign = fakeIpam('host-local', 21);
      const { ipam } = hostLocal(21);
      const text = confText('bridge', '  "bridge": "cbr21",', ipam);
      const run = inProcess(createBridgePlugin({ netlink: nl }), `${foreign.dir}:${BIN_DIR}`);
      const { result, sent } = await addCheckDel(run, text);
      // The fake's address (.5), not host-local's first free one (.2).
      expect(result.ips).toEqual([{ interface: 2, address: foreign.address, gateway: foreign.gateway }]);
      expect(foreign.calls()).toEqual(sent);
    });

    it.each([
      ['only dist/bin', (_fake: string) => BIN_DIR],
      ['dist/bin before a foreign host-local', (fake: string) => `${BIN_DIR}:${fake}`],
    ])(
      "cni-kit's own host-local on CNI_PATH (%s) is served in-process: nothing is exec'd",
      async (_name, cniPath) => {
        const nl = memory();
        const foreign = fakeIpam('host-local', 22);
        const wire = tripwire();
        const { ipam, reservations } = hostLocal(22);
        const text = confText('bridge', '  "bridge": "cbr22",', ipam);
        const run = inProcess(createBridgePlugin({ netlink: nl }), cniPath(foreign.dir), wire.env);
        const { result } = await addCheckDel(run, text, () => {
          expect(readdirSync(reservations)).toContain('10.77.22.2');
        });
        expect(result.ips).toEqual([{ interface: 2, address: '10.77.22.2/24', gateway: '10.77.22.1' }]);
        expect(readdirSync(reservations)).not.toContain('10.77.22.2');
        expect(foreign.calls()).toEqual([]);
        expect(wire.hits()).toEqual([]);
      },
    );

    it("the tripwire does catch an exec'd cni-kit binary (its marker names another type than ipam.type)", async () => {
      const nl = memory();
      const wire = tripwire();
      const dir = freshDir('renamed-bin');
      symlinkSync(join(BIN_DIR, 'host-local'), join(dir, 'ck-host-local'));
      const dataDir = freshDir('host-local-data');
      const text = confText(
        'bridge',
        '  "bridge": "cbr23",',
        `"type": "ck-host-local", "subnet": "10.77.23.0/24", "dataDir": ${JSON.stringify(dataDir)}`,
      );
      const run = inProcess(createBridgePlugin({ netlink: nl }), dir, wire.env);
      const { result } = await addCheckDel(run, text);
      expect(result.ips).toEqual([{ interface: 2, address: '10.77.23.2/24', gateway: '10.77.23.1' }]);
      const script = join(dir, 'ck-host-local');
      expect(wire.hits()).toEqual([`ADD ${script}`, `CHECK ${script}`, `DEL ${script}`]);
    });
  });
});
