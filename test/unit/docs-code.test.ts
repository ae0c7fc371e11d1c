// Every TypeScript/JavaScript code block of README.md and docs/*.md compiles as a user's module
// would (strict, exactOptionalPropertyTypes, noUncheckedIndexedAccess, NodeNext, `cni-kit` and
// `cni-kit/*` resolved to this checkout's source), and blocks marked `runnable` also run.
//
// The info string after the language says how a block is treated:
//   ```ts                     compiled
//   ```ts runnable            compiled, then run with tsx; must exit 0 (timeout: RUN_TIMEOUT_MS)
//   ```ts runnable root       the same, run only as root with the Go plugins in /usr/lib/cni
//   ```ts no-check <reason>   not compiled (a fragment); the reason is required
// Other languages (sh, json, yaml, text) are not checked. Each block is its own test, named
// <file>:<line> of its opening fence, and a compile error points at the markdown line.
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const RUN_TIMEOUT_MS = 60_000;
const LANGS: Record<string, '.ts' | '.mjs'> = {
  ts: '.ts',
  typescript: '.ts',
  js: '.mjs',
  javascript: '.mjs',
};
const FLAGS = new Set(['runnable', 'root']);

interface Block {
  /** `docs/runtime.md:48`: the file and the line of the opening fence. */
  where: string;
  file: string;
  /** Line (1-based) in the markdown file of the block's first code line. */
  firstLine: number;
  code: string;
  ext: '.ts' | '.mjs';
  flags: Set<string>;
  /** Set for `no-check` blocks. */
  noCheck?: string;
  /** A problem with the block's info string. */
  badInfo?: string;
}

function docFiles(): string[] {
  const docs = readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs];
}

/** The fenced code blocks of one markdown file in a language we check. */
function extractBlocks(file: string): Block[] {
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^ {0,3}(`{3,}|~{3,})\s*(\S*)\s*(.*)$/.exec(lines[i] ?? '');
    if (!open) continue;
    const fence = open[1] ?? '```';
    const lang = (open[2] ?? '').toLowerCase();
    const rest = (open[3] ?? '').trim();
    let end = i + 1;
    while (end < lines.length && !(lines[end] ?? '').trimStart().startsWith(fence)) end++;
    const ext = LANGS[lang];
    if (ext) {
      const block: Block = {
        where: `${file}:${i + 1}`,
        file,
        firstLine: i + 2,
        code: lines.slice(i + 1, end).join('\n'),
        ext,
        flags: new Set(),
      };
      if (rest.startsWith('no-check')) {
        block.noCheck = rest.slice('no-check'.length).replace(/^[\s:]+/, '');
        if (!block.noCheck) block.badInfo = '`no-check` needs a reason after it';
      } else if (rest) {
        for (const flag of rest.split(/\s+/)) {
          if (FLAGS.has(flag)) block.flags.add(flag);
          else block.badInfo = `unknown flag "${flag}" (use runnable, root, or no-check <reason>)`;
        }
        if (block.flags.has('root') && !block.flags.has('runnable'))
          block.badInfo = '`root` goes with `runnable`';
      }
      blocks.push(block);
    }
    i = end;
  }
  return blocks;
}

const blocks = docFiles().flatMap(extractBlocks);
const work = mkdtempSync(join(tmpdir(), 'ck-docs-'));
const fileOf = (b: Block) => join(work, `${b.where.replace(/[^A-Za-z0-9]+/g, '_')}${b.ext}`);
/** Compile errors per block file, filled in beforeAll. */
const errors = new Map<string, string[]>();

const compilerOptions: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  lib: ['lib.es2022.d.ts'],
  types: ['node'],
  typeRoots: [join(root, 'node_modules/@types')],
  strict: true,
  exactOptionalPropertyTypes: true,
  noUncheckedIndexedAccess: true,
  allowJs: true,
  checkJs: true,
  skipLibCheck: true,
  noEmit: true,
  paths: { 'cni-kit': [join(root, 'src/index.ts')], 'cni-kit/*': [join(root, 'src/*/index.ts')] },
};

beforeAll(() => {
  // The blocks are ES modules of a package that can reach this checkout's dependencies.
  writeFileSync(join(work, 'package.json'), '{"type":"module"}\n');
  symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'), 'dir');
  // tsx reads `paths` from here when it runs a block.
  writeFileSync(
    join(work, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        paths: compilerOptions.paths,
      },
    }),
  );
  const checked = blocks.filter((b) => b.noCheck === undefined && !b.badInfo);
  // `export {}` keeps every block a module of its own (top-level await, no shared globals);
  // appended, so block lines keep their numbers.
  for (const b of checked) writeFileSync(fileOf(b), `${b.code}\nexport {};\n`);
  const program = ts.createProgram(checked.map(fileOf), compilerOptions);
  const byFile = new Map(checked.map((b) => [fileOf(b), b]));
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n  ');
    const b = d.file ? byFile.get(d.file.fileName) : undefined;
    if (!d.file || !b) {
      // A problem outside the blocks (options, the library itself) fails every block.
      const where = d.file ? `${relative(root, d.file.fileName)}` : 'compiler';
      for (const f of byFile.keys())
        errors.set(f, [...(errors.get(f) ?? []), `${where}: TS${d.code}: ${text}`]);
      continue;
    }
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
    const list = errors.get(d.file.fileName) ?? [];
    list.push(`${b.file}:${b.firstLine + line}:${character + 1}: TS${d.code}: ${text}`);
    errors.set(d.file.fileName, list);
  }
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

const canRunAsRoot = process.getuid?.() === 0 && existsSync('/usr/lib/cni/host-device');

describe('code blocks in README.md and docs/*.md', () => {
  it('finds the blocks', () => {
    expect(blocks.length).toBeGreaterThan(10);
  });

  for (const b of blocks) {
    if (b.noCheck !== undefined && !b.badInfo) {
      // A block its author marked `no-check` is reported as skipped, with the reason given.
      it(`${b.where} compiles`, (ctx) => ctx.skip(`marked no-check: ${b.noCheck}`));
      continue;
    }
    it(`${b.where} compiles`, () => {
      if (b.badInfo) throw new Error(`${b.where}: ${b.badInfo}`);
      const list = errors.get(fileOf(b)) ?? [];
      if (list.length > 0) throw new Error(`${b.where} does not compile:\n${list.join('\n')}`);
    });
    if (b.flags.has('runnable')) {
      const skip = b.flags.has('root') && !canRunAsRoot;
      it.skipIf(skip)(
        `${b.where} runs and exits 0`,
        () => {
          if ((errors.get(fileOf(b)) ?? []).length > 0) throw new Error(`${b.where} does not compile`);
          const r = spawnSync(process.execPath, [join(root, 'node_modules/tsx/dist/cli.mjs'), fileOf(b)], {
            cwd: work,
            encoding: 'utf8',
            timeout: RUN_TIMEOUT_MS,
            killSignal: 'SIGKILL',
          });
          const how = r.error ? `${r.error.message}` : `exit ${r.status}${r.signal ? ` (${r.signal})` : ''}`;
          if (r.status !== 0) {
            throw new Error(`${b.where} failed to run: ${how}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
          }
        },
        RUN_TIMEOUT_MS + 10_000,
      );
    }
  }
});
