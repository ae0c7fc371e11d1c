// The built package as users load it, by name from inside the checkout: every subpath of the
// exports map as ESM and CommonJS with declarations, one class per concept across subpaths, a
// small root, no internals exported, and `import 'cni-kit'` loading nothing of the runtime,
// Kubernetes or whereabouts layers (proved from the modules Node actually loads, mapped back to
// their sources through the build's source maps).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  exports: Record<string, unknown>;
};
const subpaths = Object.keys(pkg.exports)
  .filter((k) => k !== './package.json')
  .map((k) => (k === '.' ? 'cni-kit' : `cni-kit/${k.slice(2)}`));
const built = existsSync(join(root, 'dist/index.js')) && existsSync(join(root, 'dist/index.cjs'));
const work = mkdtempSync(join(tmpdir(), `ckpkg-${process.pid}-`));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const node = (args: string[]) => execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();
const esm = (code: string) => node(['--input-type=module', '-e', code]);
const cjs = (code: string) => node(['-e', code]);

/** The original source files of the loaded dist files, read from their source maps. */
function sourcesOf(files: string[]): string[] {
  const out = new Set<string>();
  for (const f of files) {
    if (!f.startsWith(join(root, 'dist')) || !existsSync(`${f}.map`)) continue;
    const map = JSON.parse(readFileSync(`${f}.map`, 'utf8')) as { sources: string[] };
    for (const s of map.sources) out.add(resolve(dirname(f), s).slice(root.length));
  }
  return [...out].sort();
}

/** Layers and packages the plugin kit must not load. */
const HEAVY =
  /^(src\/(runtime|k8s|ipam\/whereabouts|netlink|netsetup)\/|node_modules\/(etcd3|@kubernetes|@grpc))/;

describe('the package', () => {
  it('every subpath loads as ESM and CJS with the same exports, and ships declarations', (ctx) => {
    if (!built) ctx.skip('dist/ is not built: run npm run build (npm test does)');
    for (const sub of subpaths) {
      const e = JSON.parse(
        esm(`import * as m from '${sub}'; console.log(JSON.stringify(Object.keys(m).sort()))`),
      );
      const c = JSON.parse(cjs(`console.log(JSON.stringify(Object.keys(require('${sub}')).sort()))`));
      expect(c, sub).toEqual(e);
      expect(e.length, sub).toBeGreaterThan(0);
      const base = sub === 'cni-kit' ? 'index' : sub.slice('cni-kit/'.length);
      expect(existsSync(join(root, `dist/${base}.d.ts`)), sub).toBe(true);
      expect(existsSync(join(root, `dist/${base}.d.cts`)), sub).toBe(true);
    }
  });

  it('shares one class per concept: an error thrown by cni-kit/delegate is a CniError of cni-kit', (ctx) => {
    if (!built) ctx.skip('dist/ is not built: run npm run build (npm test does)');
    const probe = (load: (s: string) => string) =>
      [
        `const { CniError } = ${load('cni-kit')};`,
        `const spec = ${load('cni-kit/spec')};`,
        `const { findInPath } = ${load('cni-kit/delegate')};`,
        `findInPath('x', []).catch((e) => console.log(JSON.stringify([e instanceof CniError, spec.CniError === CniError, e.code])));`,
      ].join('\n');
    const want = JSON.stringify([true, true, 4]);
    expect(esm(probe((s) => `await import('${s}')`))).toBe(want);
    expect(cjs(probe((s) => `require('${s}')`))).toBe(want);
  });

  it('the root is the plugin kit: 30-40 values at most, and no internals anywhere', (ctx) => {
    if (!built) ctx.skip('dist/ is not built: run npm run build (npm test does)');
    const rootKeys = JSON.parse(
      cjs("console.log(JSON.stringify(Object.keys(require('cni-kit'))))"),
    ) as string[];
    expect(rootKeys.length).toBeLessThanOrEqual(40);
    for (const k of [
      'pluginMain',
      'runPlugin',
      'CniError',
      'ErrorCode',
      'conf',
      'ipamFactory',
      'convertResult',
    ]) {
      expect(rootKeys).toContain(k);
    }
    const all = JSON.parse(
      cjs(`console.log(JSON.stringify(${JSON.stringify(subpaths)}.flatMap((s) => Object.keys(require(s)))))`),
    ) as string[];
    for (const internal of [
      'encodeCacheRecord',
      'decodeCacheRecord',
      'CACHE_KIND_V1',
      'ResultCache',
      'fileContent',
      'quoteOutput',
      'errorFromFailedRun',
      'execPluginForJson',
      'pointerToPath',
      'whereaboutsPoolName',
      'registerIpam',
      'defaultIpamRegistry',
    ]) {
      expect(all, internal).not.toContain(internal);
    }
  });

  it("import 'cni-kit' loads no runtime, Kubernetes, whereabouts, netlink or etcd code (CJS and ESM)", (ctx) => {
    if (!built) ctx.skip('dist/ is not built: run npm run build (npm test does)');
    // CommonJS: the loaded files are require.cache's keys.
    const viaRequire = JSON.parse(
      cjs("require('cni-kit'); console.log(JSON.stringify(Object.keys(require.cache)))"),
    ) as string[];
    // ESM: a resolve hook records every module Node loads.
    const log = join(work, 'esm-loaded.txt');
    const hook = join(work, 'hook.mjs');
    writeFileSync(
      hook,
      `import { appendFileSync } from 'node:fs';
export async function resolve(spec, context, next) {
  const r = await next(spec, context);
  appendFileSync(${JSON.stringify(log)}, r.url + '\\n');
  return r;
}`,
    );
    const register = join(work, 'register.mjs');
    writeFileSync(
      register,
      `import { register } from 'node:module';\nregister(${JSON.stringify(`file://${hook}`)});\n`,
    );
    node(['--import', register, '--input-type=module', '-e', "await import('cni-kit');"]);
    const viaImport = readFileSync(log, 'utf8')
      .split('\n')
      .filter((u) => u.startsWith('file://'))
      .map((u) => fileURLToPath(u));
    for (const [how, files] of [
      ['require', viaRequire],
      ['import', viaImport],
    ] as const) {
      const loaded = [...sourcesOf(files), ...files.map((f) => f.slice(root.length))];
      // The kit itself is there: the skel, the spec, the built-in allocators, the delegate layer.
      expect(loaded, how).toContain('src/plugin/run.ts');
      expect(loaded, how).toContain('src/ipam/host-local/allocator.ts');
      expect(loaded, how).toContain('src/delegate/invoke.ts');
      expect(
        loaded.filter((f) => HEAVY.test(f)),
        how,
      ).toEqual([]);
    }
  });
});
