// The daemon's wire protocol (multus thick-mode compatible): the JSON + base64 request envelope,
// the refusal of every malformed shape with CNI code 6 naming the field, the replies each client
// expects (cni-kit's shim: stdout verbatim; multus-shim: {"Result": ...} for ADD, empty otherwise,
// 400 on error), and the Prometheus text the metrics endpoint serves, parsed back.
import { DaemonMetrics } from 'cni-kit/daemon';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type CniRequest,
  errorBody,
  parseCniRequest,
  RequestError,
  replyFor,
  SHIM_HEADER,
} from '../../src/daemon/protocol.js';
import { CniError } from '../../src/spec/errors.js';

const body = (doc: unknown) => Buffer.from(typeof doc === 'string' ? doc : JSON.stringify(doc));
const config = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64');

/** The RequestError parseCniRequest throws for `raw`. */
function refusal(raw: Uint8Array): RequestError {
  try {
    parseCniRequest(raw, {});
  } catch (e) {
    expect(e).toBeInstanceOf(RequestError);
    return e as RequestError;
  }
  throw new Error(`accepted: ${Buffer.from(raw).toString()}`);
}

describe('parseCniRequest', () => {
  it('round-trips any environment map and any stdin bytes through the JSON + base64 envelope', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ minLength: 1, unit: 'binary' }), fc.string({ unit: 'binary' }), {
          maxKeys: 20,
        }),
        fc.uint8Array({ maxLength: 2048 }),
        fc.boolean(),
        (env, stdin, shim) => {
          const raw = body({ env, config: Buffer.from(stdin).toString('base64') });
          const r = parseCniRequest(raw, shim ? { [SHIM_HEADER]: '1' } : {});
          expect(r.env).toEqual(env);
          expect(Object.keys(r.env).sort()).toEqual(Object.keys(env).sort());
          expect(Buffer.from(r.stdin).equals(Buffer.from(stdin))).toBe(true);
          expect(r.fromShim).toBe(shim);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps a variable named __proto__ like any other', () => {
    const raw = Buffer.from('{"env":{"__proto__":"x","CNI_COMMAND":"ADD"},"config":""}');
    const r = parseCniRequest(raw, {});
    expect(Object.keys(r.env).sort()).toEqual(['CNI_COMMAND', '__proto__']);
    expect(Object.getOwnPropertyDescriptor(r.env, '__proto__')?.value).toBe('x');
  });

  it('reads type, cniVersion and the plugin hint; a config that is not JSON leaves them undefined', () => {
    const r = parseCniRequest(body({ env: {}, config: config({ cniVersion: '0.3.1', type: 'bridge' }) }), {
      'x-cni-kit-plugin': 'macvlan',
    });
    expect(r).toMatchObject({ type: 'bridge', cniVersion: '0.3.1', pluginHint: 'macvlan', fromShim: false });
    const junk = parseCniRequest(body({ env: {}, config: Buffer.from('{oops').toString('base64') }), {});
    expect(junk).toMatchObject({ type: undefined, cniVersion: undefined, pluginHint: undefined });
    expect(Buffer.from(junk.stdin).toString()).toBe('{oops');
    const noType = parseCniRequest(body({ env: {}, config: config({ type: '', cniVersion: 1 }) }), {});
    expect(noType).toMatchObject({ type: undefined, cniVersion: undefined });
  });

  const cases: Array<[string, string, RegExp]> = [
    ['not JSON', '{"env":', /^request body: not JSON/],
    ['empty', '', /^request body: not JSON/],
    ['an array', '[]', /^request body: not a JSON object/],
    ['null', 'null', /^request body: not a JSON object/],
    ['a string', '"x"', /^request body: not a JSON object/],
    ['env missing', '{"config":""}', /^request env: missing or not an object/],
    ['env an array', '{"env":[],"config":""}', /^request env: missing or not an object/],
    ['env a string', '{"env":"CNI_COMMAND=ADD","config":""}', /^request env: missing or not an object/],
    ['env null', '{"env":null,"config":""}', /^request env: missing or not an object/],
    [
      'env value a number',
      '{"env":{"CNI_MTU":1500},"config":""}',
      /^request env\.CNI_MTU: 1500 is not a string/,
    ],
    [
      'env value null',
      '{"env":{"CNI_ARGS":null},"config":""}',
      /^request env\.CNI_ARGS: null is not a string/,
    ],
    [
      'env value an object',
      '{"env":{"X":{"a":1}},"config":""}',
      /^request env\.X: \{"a":1\} is not a string/,
    ],
    ['config missing', '{"env":{}}', /^request config: missing/],
    ['config a number', '{"env":{},"config":12}', /^request config: not standard base64/],
    ['config an object', '{"env":{},"config":{"type":"bridge"}}', /^request config: not standard base64/],
    [
      'config plain JSON text',
      '{"env":{},"config":"{\\"type\\":\\"x\\"}"}',
      /^request config: not standard base64/,
    ],
    ['config without padding', '{"env":{},"config":"YWI"}', /^request config: not standard base64/],
    ['config base64url', '{"env":{},"config":"-_-_"}', /^request config: not standard base64/],
    ['config with a newline', '{"env":{},"config":"YWJj\\nZGVm"}', /^request config: not standard base64/],
  ];
  it.each(cases)('refuses %s with 400, CNI code 6 and a message naming the field', (_name, raw, msg) => {
    const e = refusal(Buffer.from(raw));
    expect(e.status).toBe(400);
    expect(e.error.code).toBe(6);
    expect(e.error.message).toMatch(msg);
    expect(e.error.details).toBeTruthy();
    expect(e.reason).toBe('malformed');
  });

  it('refuses every random non-envelope value with code 6 and never throws anything else', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const raw = body(JSON.stringify(v));
        let threw: unknown;
        try {
          parseCniRequest(raw, {});
        } catch (e) {
          threw = e;
        }
        const ok =
          v !== null &&
          typeof v === 'object' &&
          !Array.isArray(v) &&
          typeof (v as { env?: unknown }).env === 'object' &&
          (v as { env?: unknown }).env !== null &&
          !Array.isArray((v as { env?: unknown }).env) &&
          Object.values((v as { env: object }).env).every((x) => typeof x === 'string') &&
          typeof (v as { config?: unknown }).config === 'string' &&
          /^[A-Za-z0-9+/]*={0,2}$/.test((v as { config: string }).config) &&
          (v as { config: string }).config.length % 4 === 0;
        if (ok) expect(threw).toBeUndefined();
        else {
          expect(threw).toBeInstanceOf(RequestError);
          expect((threw as RequestError).error.code).toBe(6);
          expect((threw as RequestError).error.message).toMatch(/^request (body|env|config)/);
        }
      }),
      { numRuns: 300 },
    );
  });
});

const req = (fromShim: boolean): CniRequest => ({
  env: {},
  stdin: new Uint8Array(),
  fromShim,
  pluginHint: undefined,
  type: 'multus',
  cniVersion: '0.3.1',
});

describe('replyFor', () => {
  const result = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0' }], ips: [{ address: '10.0.0.2/24' }] };
  const out = `${JSON.stringify(result, null, 4)}`;

  it('answers cni-kit’s shim with the plugin stdout verbatim, for every command', () => {
    for (const command of ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS']) {
      expect(replyFor(req(true), command, { stdout: out, exitCode: 0 })).toEqual({ status: 200, body: out });
      expect(replyFor(req(true), command, { stdout: '', exitCode: 0 })).toEqual({ status: 200, body: '' });
    }
  });

  it('answers multus-shim ADD with {"Result": <result>}, every other command with an empty 200', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (res) => {
        const reply = replyFor(req(false), 'ADD', { stdout: JSON.stringify(res), exitCode: 0 });
        expect(reply.status).toBe(200);
        expect(JSON.parse(reply.body)).toEqual({ Result: JSON.parse(JSON.stringify(res)) });
      }),
    );
    for (const command of ['DEL', 'CHECK', 'GC', 'STATUS']) {
      expect(replyFor(req(false), command, { stdout: out, exitCode: 0 })).toEqual({ status: 200, body: '' });
    }
    // An ADD that printed nothing has no Result to wrap.
    expect(replyFor(req(false), 'ADD', { stdout: '', exitCode: 0 })).toEqual({ status: 200, body: '' });
  });

  it('answers a failed call with 400 and the CNI error JSON, from either client', () => {
    const err = '{"cniVersion":"0.3.1","code":7,"msg":"bad"}';
    for (const shim of [true, false]) {
      for (const command of ['ADD', 'DEL']) {
        expect(replyFor(req(shim), command, { stdout: err, exitCode: 1 })).toEqual({
          status: 400,
          body: err,
        });
      }
    }
  });
});

describe('errorBody', () => {
  it('prints the error in the config’s version (normalised), else the current one', () => {
    const e = new CniError(6, 'request body: not JSON', 'send JSON');
    expect(JSON.parse(errorBody(e, '0.3.1'))).toEqual({
      cniVersion: '0.3.1',
      code: 6,
      msg: 'request body: not JSON',
      details: 'send JSON',
    });
    expect(JSON.parse(errorBody(e, '1.0')).cniVersion).toBe('1.0.0');
    expect(JSON.parse(errorBody(e, 'nonsense')).cniVersion).toBe('1.1.0');
    expect(JSON.parse(errorBody(e, undefined)).cniVersion).toBe('1.1.0');
  });
});

// --- Prometheus text format, parsed back ---------------------------------------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the text exposition format (0.0.4) strictly enough to catch escaping mistakes. */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  expect(text.endsWith('\n')).toBe(true);
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) continue;
    const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$/.exec(line);
    if (t) {
      expect(types.has(t[1] as string)).toBe(false);
      types.set(t[1] as string, t[2] as string);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    expect(m, line).not.toBeNull();
    const name = (m as RegExpExecArray)[1] as string;
    let i = name.length;
    const labels: Record<string, string> = {};
    if (line[i] === '{') {
      i++;
      while (line[i] !== '}') {
        const k = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(i));
        expect(k, line).not.toBeNull();
        i += (k as RegExpExecArray)[0].length;
        let v = '';
        for (;;) {
          const c = line[i++];
          expect(c, line).toBeDefined();
          if (c === '"') break;
          if (c === '\\') {
            const n = line[i++];
            if (n === 'n') v += '\n';
            else if (n === '\\' || n === '"') v += n;
            else throw new Error(`bad escape \\${n} in ${line}`);
          } else v += c;
        }
        labels[(k as RegExpExecArray)[1] as string] = v;
        if (line[i] === ',') i++;
        else expect(line[i], line).toBe('}');
      }
      i++;
    }
    expect(line[i], line).toBe(' ');
    const value = Number(line.slice(i + 1));
    expect(Number.isNaN(value), line).toBe(false);
    samples.push({ name, labels, value });
  }
  return { samples, types };
}

describe('DaemonMetrics text', () => {
  const label = fc.oneof(
    fc.constantFrom('bridge', 'host-local', 'a"b', 'c\\d', 'e\nf', '\\n', '"', 'x\\"y'),
    fc.string({ maxLength: 6 }),
  );
  const call = fc.record({
    plugin: label,
    command: fc.constantFrom('ADD', 'DEL', 'CHECK', 'we"ird\n'),
    seconds: fc.oneof(fc.double({ min: 0, max: 200, noNaN: true }), fc.constantFrom(0.005, 0.01, 1, 120)),
    code: fc.option(fc.integer({ min: 1, max: 999 }), { nil: undefined }),
  });

  it('parses back: counters match the calls, histogram buckets are cumulative and monotone, +Inf equals the count, labels survive escaping', () => {
    fc.assert(
      fc.property(fc.array(call, { maxLength: 40 }), fc.array(label, { maxLength: 5 }), (calls, refusals) => {
        const m = new DaemonMetrics();
        for (const c of calls) m.observe(c.plugin, c.command, c.seconds, c.code);
        for (const r of refusals) m.refuse(r);
        const { samples, types } = parseExposition(m.render());
        expect(types.get('cni_kit_daemon_calls_total')).toBe('counter');
        expect(types.get('cni_kit_daemon_call_errors_total')).toBe('counter');
        expect(types.get('cni_kit_daemon_requests_refused_total')).toBe('counter');
        expect(types.get('cni_kit_daemon_call_duration_seconds')).toBe('histogram');
        const key = (l: Record<string, string>) => JSON.stringify(l);
        const tally = (keys: string[]) => {
          const t = new Map<string, number>();
          for (const k of keys) t.set(k, (t.get(k) ?? 0) + 1);
          return t;
        };
        const got = (name: string) =>
          new Map(samples.filter((s) => s.name === name).map((s) => [key(s.labels), s.value]));
        expect(got('cni_kit_daemon_calls_total')).toEqual(
          tally(calls.map((c) => key({ plugin: c.plugin, command: c.command }))),
        );
        expect(got('cni_kit_daemon_call_errors_total')).toEqual(
          tally(
            calls
              .filter((c) => c.code !== undefined)
              .map((c) => key({ plugin: c.plugin, command: c.command, code: String(c.code) })),
          ),
        );
        expect(got('cni_kit_daemon_requests_refused_total')).toEqual(
          tally(refusals.map((r) => key({ reason: r }))),
        );
        // Histograms, per plugin and command.
        const groups = new Map<string, typeof calls>();
        for (const c of calls) {
          const k = key({ plugin: c.plugin, command: c.command });
          groups.set(k, [...(groups.get(k) ?? []), c]);
        }
        const buckets = samples.filter((s) => s.name === 'cni_kit_daemon_call_duration_seconds_bucket');
        const counts = got('cni_kit_daemon_call_duration_seconds_count');
        const sums = got('cni_kit_daemon_call_duration_seconds_sum');
        expect(new Set(counts.keys())).toEqual(new Set(groups.keys()));
        for (const [k, cs] of groups) {
          const mine = buckets.filter((b) => {
            const { le: _le, ...rest } = b.labels;
            return key(rest) === k;
          });
          const les = mine.map((b) =>
            b.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(b.labels.le),
          );
          expect(les.at(-1)).toBe(Number.POSITIVE_INFINITY);
          for (let i = 1; i < mine.length; i++) {
            expect(les[i] as number).toBeGreaterThan(les[i - 1] as number);
            expect((mine[i] as Sample).value).toBeGreaterThanOrEqual((mine[i - 1] as Sample).value);
          }
          mine.forEach((b, i) => {
            expect(b.value).toBe(cs.filter((c) => c.seconds <= (les[i] as number)).length);
          });
          expect(mine.at(-1)?.value).toBe(cs.length);
          expect(counts.get(k)).toBe(cs.length);
          expect(sums.get(k)).toBeCloseTo(
            cs.reduce((a, c) => a + c.seconds, 0),
            6,
          );
        }
        expect(samples.find((s) => s.name === 'cni_kit_daemon_inflight_calls')?.value).toBe(0);
      }),
      { numRuns: 200 },
    );
  });
});
