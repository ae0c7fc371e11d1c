// Messages on odd input (F17): random configs and environments through the debug plugin and a few
// simple plugins, in-process with runPlugin (the binaries' own code path). Invariants: stdout is
// empty or exactly one JSON document; a failure is CNI error JSON with exit status 1; no message
// says "undefined", "NaN" or "[object Object]", names a TypeError or carries a stack trace.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALL_VERSIONS, type PluginSpec, runPlugin } from 'cni-kit';
import { ipamPlugin, StaticAllocator } from 'cni-kit/ipam';
import { memoryNetlink } from 'cni-kit/netlink';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { debugPlugin } from '../../examples/debug/plugin.js';
import { createLoopbackPlugin } from '../../examples/loopback/plugin.js';
import { createMacvlanPlugin } from '../../examples/macvlan/plugin.js';
import { cidr4, cidr6, ipv4, ipv6, result020, result040, result100 } from './arbitraries.js';

const work = mkdtempSync(join(tmpdir(), `ckmsg-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const NUM_RUNS = Number(process.env.CNI_KIT_PROPERTY_RUNS ?? 150);

// Words from an alphabet that cannot spell the forbidden words, so any hit is the SDK's own text.
const word = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,11}$/).filter((s) => !/undefined|nan/i.test(s));
const junk = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -5, max: 70000 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  word,
  fc.constant(''),
  fc.array(word, { maxLength: 2 }),
  fc.dictionary(word, word, { maxKeys: 2 }),
);
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(fc.oneof(a, junk), { nil: undefined, freq: 3 });

/** Mostly `good`, sometimes `odd`: most calls get past the envelope checks into plugin code. */
const mostly = <T, U>(good: fc.Arbitrary<T>, odd: fc.Arbitrary<U>) =>
  fc.oneof({ weight: 6, arbitrary: good }, { weight: 1, arbitrary: odd });

const version = mostly(
  fc.constantFrom(...ALL_VERSIONS),
  fc.oneof(fc.constantFrom('', '9.9.9', '1.0.0-rc1', '1.1', '1.2.3.4'), junk),
);
const ipam = fc.oneof(
  fc.constant({}),
  fc.record({ type: fc.oneof(fc.constantFrom('static', '', 'nope', 'a/b', 'debug', 'macvlan'), junk) }),
  fc.record(
    {
      type: fc.constant('static'),
      addresses: mostly(
        fc.array(
          fc.record(
            { address: mostly(fc.oneof(cidr4, cidr6), word), gateway: maybe(fc.oneof(ipv4, ipv6)) },
            { requiredKeys: [] },
          ),
          { maxLength: 2 },
        ),
        junk,
      ),
      routes: maybe(fc.array(fc.record({ dst: fc.oneof(cidr4, word), gw: maybe(ipv4) }), { maxLength: 2 })),
      dns: maybe(fc.record({ nameservers: fc.array(ipv4, { maxLength: 1 }) })),
    },
    { requiredKeys: ['type'] },
  ),
  junk,
);
const prevResult = fc.oneof(
  result100(),
  result040(),
  result020(),
  fc.dictionary(word, junk, { maxKeys: 3 }),
  junk,
);
const configFor = (type: string) =>
  fc
    .record(
      {
        cniVersion: version,
        cniVersions: fc.oneof(fc.array(version, { maxLength: 3 }), junk),
        name: mostly(word, fc.oneof(fc.constant('n'.repeat(200)), fc.constant('bad name'), junk)),
        type: mostly(fc.constant(type), fc.oneof(fc.constantFrom('debug', 'static', 'a/b'), junk)),
        ipam,
        dns: fc.oneof(
          fc.record({ nameservers: fc.array(fc.oneof(ipv4, word), { maxLength: 2 }), domain: maybe(word) }),
          junk,
        ),
        prevResult,
        runtimeConfig: fc.oneof(fc.dictionary(word, junk, { maxKeys: 2 }), junk),
        args: fc.oneof(fc.record({ cni: fc.dictionary(word, junk, { maxKeys: 2 }) }), junk),
        // debug's fields
        recordFile: mostly(
          fc.constantFrom(join(work, 'record.jsonl'), work, '/nonexistent/dir/record', ''),
          junk,
        ),
        ips: mostly(fc.array(fc.oneof(cidr4, cidr6), { maxLength: 3 }), fc.oneof(fc.array(word), junk)),
        gateway: mostly(fc.oneof(ipv4, ipv6), junk),
        routes: mostly(
          fc.array(fc.record({ dst: fc.oneof(cidr4, cidr6), gw: maybe(fc.oneof(ipv4, ipv6)) }), {
            maxLength: 2,
          }),
          junk,
        ),
        fail: fc.oneof(
          fc.record({ code: fc.oneof(fc.integer({ min: -1, max: 120 }), junk), msg: fc.oneof(word, junk) }),
          junk,
        ),
        throw: fc.oneof(word, junk),
        // macvlan's fields
        master: mostly(fc.constantFrom('eth0', 'nope0'), junk),
        mode: mostly(fc.constantFrom('bridge', 'vepa', 'private', 'passthru', 'source'), junk),
        mtu: mostly(fc.integer({ min: 0, max: 70000 }), junk),
        mac: maybe(fc.constantFrom('0a:58:00:00:00:01', 'zz', '')),
      },
      { requiredKeys: [] },
    )
    .map((c) => {
      // The envelope fields are present most of the time.
      const out: Record<string, unknown> = { ...c };
      if (!('name' in c)) out.name = 'net';
      if (!('type' in c)) out.type = type;
      return out;
    });
const envArb = fc.record(
  {
    CNI_COMMAND: fc.constantFrom(
      'ADD',
      'ADD',
      'ADD',
      'ADD',
      'DEL',
      'DEL',
      'CHECK',
      'GC',
      'STATUS',
      'VERSION',
      '',
      'FOO',
    ),
    CNI_CONTAINERID: mostly(
      fc.constantFrom('c1', 'c2'),
      fc.oneof(fc.constantFrom('', 'bad id', 'c'.repeat(300)), word),
    ),
    CNI_NETNS: mostly(
      fc.constant('/var/run/netns/c1'),
      fc.constantFrom('/var/run/netns/gone', '', 'relative'),
    ),
    CNI_IFNAME: mostly(
      fc.constantFrom('eth0', 'net1'),
      fc.constantFrom('', 'lo', 'a/b', 'x'.repeat(16), '..'),
    ),
    CNI_ARGS: mostly(
      fc.constantFrom('', 'IgnoreUnknown=1;IP=10.1.0.9'),
      fc.constantFrom('K8S_POD_NAME=p', 'garbage', 'IP=x'),
    ),
    CNI_PATH: mostly(fc.constant('/nonexistent'), fc.constantFrom('', '/nonexistent:/also-not')),
  },
  { requiredKeys: ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_PATH'] },
);
// Some inputs are not JSON objects at all.
const stdinFor = (type: string) =>
  fc.oneof(
    { weight: 12, arbitrary: configFor(type).map((c) => JSON.stringify(c)) },
    { weight: 1, arbitrary: fc.constantFrom('', 'null', '[]', '{', '"x"', '\ufeff{}', '{"name":') },
  );

const FORBIDDEN = [
  /undefined/,
  /\bNaN\b/,
  /\[object Object\]/,
  /TypeError/,
  /ReferenceError/,
  /Cannot read prop/,
  /\n\s+at /,
];

function checkOutcome(out: { stdout: string; stderr: string; exitCode: number }): void {
  if (out.stdout !== '') {
    let doc: unknown;
    expect(() => {
      doc = JSON.parse(out.stdout);
    }, out.stdout).not.toThrow();
    const isError = typeof doc === 'object' && doc !== null && 'code' in doc && 'msg' in doc;
    expect(isError, out.stdout).toBe(out.exitCode !== 0);
    if (isError) {
      const e = doc as { code: unknown; msg: unknown; details?: unknown };
      expect(typeof e.code).toBe('number');
      expect(typeof e.msg).toBe('string');
      const text = `${e.msg} ${e.details ?? ''}`;
      for (const re of FORBIDDEN) expect(text, out.stdout).not.toMatch(re);
    }
  } else {
    expect(out.exitCode, out.stderr).toBe(0);
  }
  for (const re of [/TypeError/, /ReferenceError/, /Cannot read prop/]) expect(out.stderr).not.toMatch(re);
}

function plugins(): Array<[string, () => PluginSpec<never>]> {
  const nl = () => {
    const m = memoryNetlink({ hostLinks: ['eth0'] });
    m.addNetns('/var/run/netns/c1');
    return m;
  };
  return [
    ['debug', () => debugPlugin() as PluginSpec<never>],
    [
      'static',
      () =>
        ipamPlugin((c) => new StaticAllocator(c), { supportedVersions: ALL_VERSIONS }) as PluginSpec<never>,
    ],
    ['loopback', () => createLoopbackPlugin({ netlink: nl() }) as PluginSpec<never>],
    ['macvlan', () => createMacvlanPlugin({ netlink: nl() }) as PluginSpec<never>],
  ];
}

describe('messages on odd input (F17)', () => {
  it.each(plugins())(
    '%s: one JSON document, the right exit status, no undefined/TypeError/stack',
    async (_name, make) => {
      await fc.assert(
        fc.asyncProperty(envArb, stdinFor(_name), async (env, input) => {
          const out = await runPlugin(make(), { env, stdin: input });
          checkOutcome(out);
        }),
        { numRuns: NUM_RUNS },
      );
    },
  );
});
