// The built package resolves by name from inside the checkout, as ESM and as CommonJS, with types.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const built = existsSync(`${root}dist/index.js`) && existsSync(`${root}dist/index.cjs`);

const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();

describe("import 'cni-kit'", () => {
  it('works as ESM and CJS with the same exports, and ships declarations', (ctx) => {
    if (!built) ctx.skip('dist/ is not built: run npm run build (npm test does)');
    const esm = node([
      '--input-type=module',
      '-e',
      "import * as m from 'cni-kit'; console.log(JSON.stringify(Object.keys(m).sort()))",
    ]);
    const cjs = node(['-e', "console.log(JSON.stringify(Object.keys(require('cni-kit')).sort()))"]);
    const esmKeys = JSON.parse(esm) as string[];
    expect(JSON.parse(cjs)).toEqual(esmKeys);
    for (const k of [
      'pluginMain',
      'runPlugin',
      'convertResult',
      'CniError',
      'parseNetConfList',
      'parseCniArgs',
    ]) {
      expect(esmKeys).toContain(k);
    }
    expect(existsSync(`${root}dist/index.d.ts`)).toBe(true);
    expect(existsSync(`${root}dist/index.d.cts`)).toBe(true);
  });

  it('loading the package does not load the etcd or Kubernetes clients', (ctx) => {
    if (!built) ctx.skip('dist/ is not built: run npm run build (npm test does)');
    const loaded = node([
      '-e',
      "require('cni-kit'); console.log(JSON.stringify(Object.keys(require.cache).filter(p => /node_modules\\/(etcd3|@kubernetes|@grpc)/.test(p)).length))",
    ]);
    expect(loaded).toBe('0');
  });
});
