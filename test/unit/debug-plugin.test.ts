// The debug example on odd configs (F17): the gateway goes only to addresses of its family, and a
// recordFile that cannot be written is a CNI error naming the field, not Node's raw errno text.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPlugin } from 'cni-kit';
import { afterAll, describe, expect, it } from 'vitest';
import { debugPlugin } from '../../examples/debug/plugin.js';

const dir = mkdtempSync(join(tmpdir(), `ckdbg-${process.pid}-`));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const env = (cmd: string) => ({
  CNI_COMMAND: cmd,
  CNI_CONTAINERID: 'c1',
  CNI_NETNS: '/var/run/netns/c1',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/nonexistent',
});
const run = (cmd: string, conf: Record<string, unknown>) =>
  runPlugin(debugPlugin(), {
    env: env(cmd),
    stdin: JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'debug', ...conf }),
  });

describe('debug plugin', () => {
  it('gives the gateway only to addresses of its own family', async () => {
    const out = await run('ADD', { ips: ['10.0.0.1/24', 'fd00::1/64'], gateway: '10.0.0.254' });
    expect(out.exitCode, out.stdout).toBe(0);
    expect(JSON.parse(out.stdout).ips).toEqual([
      { interface: 0, address: '10.0.0.1/24', gateway: '10.0.0.254' },
      { interface: 0, address: 'fd00::1/64' },
    ]);
  });

  it('a recordFile that is a directory is code 5 naming recordFile, without a stack', async () => {
    for (const cmd of ['ADD', 'DEL']) {
      const out = await run(cmd, { recordFile: dir });
      expect(out.exitCode).toBe(1);
      const err = JSON.parse(out.stdout);
      expect(err.code).toBe(5);
      expect(err.msg).toBe(
        `recordFile: cannot append to ${JSON.stringify(dir)}: cannot open ${JSON.stringify(dir)}: illegal operation on a directory (EISDIR); the path is a directory: name a file`,
      );
      expect(out.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('a relative recordFile is code 7 and nothing is written in the working directory', async () => {
    const name = `ckdbg-rel-${process.pid}`;
    const out = await run('ADD', { recordFile: name });
    expect(out.exitCode).toBe(1);
    expect(JSON.parse(out.stdout)).toMatchObject({
      code: 7,
      msg: expect.stringContaining('not an absolute path'),
    });
    expect(existsSync(name)).toBe(false);
  });
});
