// Stdout carries exactly one JSON document: console.* and process.stdout.write inside plugin code
// go to the call's log, and a result whose ips point at interfaces it does not list is refused.
import { CniError, conf, ErrorCode, type PluginSpec, runPlugin, validateResult } from 'cni-kit';
import { afterEach, describe, expect, it, vi } from 'vitest';

const env = (cmd: string) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: 'c1',
  CNI_NETNS: '/var/run/netns/x',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
});
const stdin = '{"cniVersion":"1.0.0","name":"n","type":"noisy"}';
const result = {
  interfaces: [{ name: 'eth0', sandbox: '/var/run/netns/x' }],
  ips: [{ interface: 0, address: '10.0.0.2/24' }],
};

/** Asserts one JSON document and nothing else on stdout. */
function single(stdout: string): Record<string, unknown> {
  const doc = JSON.parse(stdout) as Record<string, unknown>;
  expect(JSON.stringify(JSON.parse(stdout), null, 4)).toBe(stdout.trim());
  return doc;
}

afterEach(() => vi.restoreAllMocks());

describe('stdout protection while plugin code runs', () => {
  it('console.* and process.stdout.write inside ADD go to the log; stdout holds only the result', async () => {
    const before = { log: console.log, table: console.table, write: process.stdout.write };
    const spec: PluginSpec = {
      add: () => {
        console.log('log %s', 'formatted', { a: 1 });
        console.info('info');
        console.debug('debug');
        console.warn('warn');
        console.error('error');
        console.dir({ dir: true });
        console.table([{ x: 1 }]);
        console.trace('trace');
        process.stdout.write('raw write\npartial ');
        process.stdout.write(Buffer.from('line\n'));
        process.stdout.write('no newline at the end');
        return result; // no cniVersion: the SDK stamps it
      },
    };
    const out = await runPlugin(spec, { env: env('ADD'), stdin });
    expect(out.exitCode).toBe(0);
    const doc = single(out.stdout);
    expect(doc.cniVersion).toBe('1.0.0');
    expect(doc.ips).toEqual([{ interface: 0, address: '10.0.0.2/24' }]);
    for (const text of [
      'log formatted { a: 1 }',
      'info',
      'debug',
      'warn',
      'error',
      '{ dir: true }',
      '│ (index) │ x │',
      'Trace: trace',
      'raw write',
      'partial line',
      'no newline at the end',
    ]) {
      expect(out.stderr).toContain(text);
    }
    // Restored afterwards: the very same functions as before the call.
    expect(console.log).toBe(before.log);
    expect(console.table).toBe(before.table);
    expect(process.stdout.write).toBe(before.write);
  });

  it('restores the console after a handler that throws, and still prints one error document', async () => {
    const before = console.log;
    const out = await runPlugin(
      {
        add: () => {
          console.log('about to fail');
          throw new CniError(ErrorCode.TryAgainLater, 'busy');
        },
      },
      { env: env('ADD'), stdin },
    );
    expect(out.exitCode).toBe(1);
    expect(single(out.stdout)).toMatchObject({ code: 11, msg: 'busy' });
    expect(out.stderr).toContain('about to fail');
    expect(console.log).toBe(before);
  });

  it('covers every handler and the config schema, and leaves output outside the call alone', async () => {
    const outside = vi.spyOn(console, 'log').mockImplementation(() => {});
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const running = runPlugin(
      {
        config: conf.object({}).transform((v) => {
          console.log('schema runs');
          return v;
        }),
        add: () => result,
        del: async () => {
          console.log('del says hi');
          await gate;
          console.log('del says bye');
        },
      },
      { env: env('DEL'), stdin },
    );
    await new Promise((r) => setTimeout(r, 10));
    console.log('from the test, not the plugin'); // while the guard is installed
    release();
    const out = await running;
    expect(out).toMatchObject({ exitCode: 0, stdout: '' });
    expect(out.stderr).toBe('schema runs\ndel says hi\ndel says bye\n');
    expect(outside).toHaveBeenCalledTimes(1);
    expect(outside).toHaveBeenCalledWith('from the test, not the plugin');
  });

  it('keeps concurrent calls apart: each call gets its own output', async () => {
    const spec: PluginSpec = {
      add: async (ctx) => {
        for (let i = 0; i < 3; i++) {
          console.log(`${ctx.containerId} ${i}`);
          await new Promise((r) => setTimeout(r, 1));
        }
        return result;
      },
    };
    const [a, b] = await Promise.all([
      runPlugin(spec, { env: { ...env('ADD'), CNI_CONTAINERID: 'a' }, stdin }),
      runPlugin(spec, { env: { ...env('ADD'), CNI_CONTAINERID: 'b' }, stdin }),
    ]);
    expect(a.stderr).toBe('a 0\na 1\na 2\n');
    expect(b.stderr).toBe('b 0\nb 1\nb 2\n');
  });

  it('a log callback that itself writes to the console does not loop', async () => {
    const seen: string[] = [];
    const real = vi.spyOn(console, 'error').mockImplementation((line: string) => {
      seen.push(line);
    });
    const out = await runPlugin(
      {
        add: () => {
          console.log('through the log');
          return result;
        },
      },
      { env: env('ADD'), stdin, log: (line) => console.error(line) },
    );
    expect(out.exitCode).toBe(0);
    expect(seen).toEqual(['through the log']);
    expect(real).toHaveBeenCalledTimes(1);
  });
});

describe('ips[].interface must index interfaces', () => {
  it('a handler result with ips[0].interface = 5 and one interface is refused with code 999', async () => {
    const out = await runPlugin(
      {
        add: () => ({
          interfaces: [{ name: 'eth0' }],
          ips: [{ interface: 5, address: '10.0.0.2/24' }],
        }),
      },
      { env: env('ADD'), stdin },
    );
    expect(out.exitCode).toBe(1);
    const err = single(out.stdout);
    expect(err.code).toBe(ErrorCode.Internal);
    expect(err.msg).toBe(
      'plugin returned an invalid result: plugin result.ips[0].interface: 5 is not an index into interfaces: ' +
        'the result lists 1 (indexes 0 to 0); use the index of the interface in "interfaces" (0 to 0), ' +
        'or leave "interface" out',
    );
  });

  it('validateResult names the field, the value and the fix (code 6), for 1.x and 0.4.0 results', () => {
    const fail = (r: unknown) => {
      try {
        validateResult(r as never);
      } catch (e) {
        return e as CniError;
      }
      throw new Error('expected a CniError');
    };
    const none = fail({ cniVersion: '1.1.0', ips: [{ interface: 0, address: '10.0.0.2/24' }] });
    expect(none.code).toBe(ErrorCode.DecodingFailure);
    expect(none.message).toBe(
      'result.ips[0].interface: 0 is not an index into interfaces: the result lists no interfaces; ' +
        'add the interface to "interfaces", or leave "interface" out',
    );
    const two = fail({
      cniVersion: '0.4.0',
      dns: {},
      interfaces: [{ name: 'a' }, { name: 'b' }],
      ips: [
        { version: '4', interface: 1, address: '10.0.0.2/24' },
        { version: '4', interface: 2, address: '10.0.0.3/24' },
      ],
    });
    expect(two.message).toMatch(/^result\.ips\[1\]\.interface: 2 is not an index into interfaces/);
    const negative = fail({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'a' }],
      ips: [{ interface: -1, address: '10.0.0.2/24' }],
    });
    expect(negative.message).toBe(
      'result.ips[0].interface: -1 must be an integer >= 0; use a whole number >= 0',
    );
    const fraction = fail({
      cniVersion: '1.1.0',
      interfaces: [{ name: 'a' }],
      ips: [{ interface: 0.5, address: '10.0.0.2/24' }],
    });
    expect(fraction.message).toMatch(/^result\.ips\[0\]\.interface: 0\.5 must be an integer >= 0/);
    // In range, or left out: fine.
    expect(() =>
      validateResult({
        cniVersion: '1.1.0',
        interfaces: [{ name: 'a' }, { name: 'b' }],
        ips: [{ interface: 1, address: '10.0.0.2/24' }, { address: '10.0.0.3/24' }],
      }),
    ).not.toThrow();
  });
});
