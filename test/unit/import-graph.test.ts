// The layering of docs/architecture.md, checked on the source: every import in src/ (type-only
// imports and re-exports included) points down or stays in its own layer, peers never import each
// other, no file imports itself back through a cycle, and the examples use only the package's
// public subpaths. The checker is tested on a made-up graph first, so a broken checker cannot pass.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Layers bottom-up; a layer may import only layers of a lower rank (and itself). */
const RANK: Record<string, number> = {
  fs: 0,
  spec: 1,
  // The libc binding (FFI): netlink sockets, setns, flock. Used by ipam and netlink alike.
  sys: 2,
  plugin: 2,
  delegate: 3,
  ipam: 3,
  netlink: 3,
  netsetup: 4,
  runtime: 5,
  k8s: 5,
  daemon: 6,
  // The conformance kit: a library over spec (and processes it starts), under the CLI.
  conform: 6,
  cli: 7,
  // src/index.ts and src/kit.ts: the package root, which wires layers together.
  root: 8,
};

/** What the settled points narrow further than the ranks. */
const ONLY: Record<string, string[]> = {
  // Kubernetes access needs the protocol model only (config files are the runtime's business).
  k8s: ['spec', 'fs'],
  // The plugin kit must not pull in the runtime, Kubernetes or netlink.
  root: ['plugin', 'spec', 'ipam', 'delegate', 'fs'],
};

type Graph = Map<string, string[]>;

function layerOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] !== 'src') return parts[0] ?? file;
  return parts.length === 2 ? 'root' : (parts[1] ?? 'root');
}

/** Layer rule violations and import cycles of a file graph (paths relative to the repo). */
function checkGraph(graph: Graph): string[] {
  const problems: string[] = [];
  for (const [from, tos] of graph) {
    const a = layerOf(from);
    for (const to of tos) {
      const b = layerOf(to);
      if (a === b) continue;
      const ra = RANK[a];
      const rb = RANK[b];
      if (ra === undefined || rb === undefined) problems.push(`${from} -> ${to}: unknown layer ${a} or ${b}`);
      else if (rb === ra) problems.push(`${from} -> ${to}: sideways (${a} and ${b} are peers)`);
      else if (rb > ra) problems.push(`${from} -> ${to}: upward (${a} is below ${b})`);
      else if (ONLY[a] && !ONLY[a].includes(b))
        problems.push(`${from} -> ${to}: ${a} may use only ${ONLY[a]}`);
    }
  }
  // Cycles: Tarjan's strongly connected components.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v))
        problems.push(`cycle: ${scc.sort().join(' <-> ')}`);
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return problems;
}

function walk(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walk(join(dir, d.name)) : d.name.endsWith('.ts') ? [join(dir, d.name)] : [],
  );
}

/** Every module specifier of a file: imports, `import type`, re-exports and dynamic import(). */
function specifiers(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(join(root, file), 'utf8'), true, true);
  return info.importedFiles.map((f) => f.fileName);
}

function sourceGraph(): Graph {
  const graph: Graph = new Map();
  for (const file of walk('src')) {
    const deps = specifiers(file)
      .filter((s) => s.startsWith('.'))
      .map((s) => relative(root, resolve(root, dirname(file), s.replace(/\.js$/, '.ts'))));
    graph.set(file, deps);
  }
  return graph;
}

describe('import graph', () => {
  it('the checker finds upward and sideways imports, narrowed layers and cycles', () => {
    const g: Graph = new Map([
      ['src/spec/a.ts', ['src/plugin/b.ts']],
      ['src/plugin/b.ts', ['src/spec/c.ts']],
      ['src/spec/c.ts', ['src/spec/a.ts']],
      ['src/ipam/d.ts', ['src/delegate/e.ts']],
      ['src/delegate/e.ts', []],
      ['src/k8s/f.ts', ['src/netsetup/g.ts']],
      ['src/netsetup/g.ts', []],
      ['src/fs/h.ts', ['src/fs/h.ts']],
    ]);
    const problems = checkGraph(g);
    expect(problems).toContain('src/spec/a.ts -> src/plugin/b.ts: upward (spec is below plugin)');
    expect(problems).toContain('src/ipam/d.ts -> src/delegate/e.ts: sideways (ipam and delegate are peers)');
    expect(problems).toContain('src/k8s/f.ts -> src/netsetup/g.ts: k8s may use only spec,fs');
    expect(problems).toContain('cycle: src/plugin/b.ts <-> src/spec/a.ts <-> src/spec/c.ts');
    expect(problems).toContain('cycle: src/fs/h.ts');
    expect(checkGraph(new Map([['src/netsetup/x.ts', ['src/ipam/y.ts', 'src/spec/z.ts']]]))).toEqual([]);
  });

  it('src/ imports only downward, never sideways, without cycles', () => {
    const graph = sourceGraph();
    expect(graph.size).toBeGreaterThan(50);
    for (const deps of graph.values()) for (const d of deps) expect(graph.has(d), d).toBe(true);
    expect(checkGraph(graph)).toEqual([]);
  });

  it('the crash-safe file module is a leaf and spec does no I/O', () => {
    const graph = sourceGraph();
    for (const [file, deps] of graph) {
      if (file.startsWith('src/fs/'))
        expect(
          deps.filter((d) => !d.startsWith('src/fs/')),
          file,
        ).toEqual([]);
    }
    const io = /^node:(fs|child_process|net|http|https|dgram)(\/|$)/;
    for (const file of walk('src/spec')) {
      expect(
        specifiers(file).filter((s) => io.test(s)),
        file,
      ).toEqual([]);
    }
  });

  it('examples import only public subpaths of cni-kit (and their own files)', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { exports: object };
    const publicPaths = new Set(
      Object.keys(pkg.exports).map((k) => (k === '.' ? 'cni-kit' : `cni-kit/${k.slice(2)}`)),
    );
    for (const file of walk('examples')) {
      for (const s of specifiers(file)) {
        if (s.startsWith('.')) {
          const target = relative(root, resolve(root, dirname(file), s));
          expect(target.startsWith(dirname(file)), `${file} imports ${s}`).toBe(true);
        } else if (s.startsWith('cni-kit')) {
          expect(publicPaths.has(s), `${file} imports ${s}`).toBe(true);
        } else {
          expect(s.startsWith('node:'), `${file} imports ${s}`).toBe(true);
        }
      }
    }
  });
});
