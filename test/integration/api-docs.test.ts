// The API reference builds: TypeDoc over every public entry point (typedoc.json, `npm run docs`),
// with broken {@link}s, broken relative links and referenced-but-unexported types as errors.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'ck-api-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe('API reference (TypeDoc)', () => {
  it('typedoc.json documents exactly the subpaths of the exports map', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      exports: Record<string, unknown>;
    };
    const config = JSON.parse(readFileSync(join(root, 'typedoc.json'), 'utf8')) as { entryPoints: string[] };
    const subpaths = Object.keys(pkg.exports).filter((k) => k !== './package.json');
    const wanted = subpaths.map((k) => (k === '.' ? 'src/index.ts' : `src/${k.slice(2)}/index.ts`));
    expect([...config.entryPoints].sort()).toEqual(wanted.sort());
  });

  it('builds without warnings that count as errors', () => {
    const r = spawnSync(process.execPath, [join(root, 'node_modules/typedoc/bin/typedoc'), '--out', out], {
      cwd: root,
      encoding: 'utf8',
      timeout: 170_000,
    });
    if (r.status !== 0) {
      throw new Error(`typedoc exited ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
    }
    for (const name of ['cni-kit', 'cni-kit_spec', 'cni-kit_runtime', 'cni-kit_fs']) {
      expect(existsSync(join(out, 'modules', `${name}.html`)), name).toBe(true);
    }
  }, 180_000);
});
