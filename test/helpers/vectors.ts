// Test vectors: configs copied verbatim from upstream docs, one `test/vectors/<id>.vector` each
// (the format is described in test/vectors/README.md). This file reads them; vectors-sandbox.ts
// gives each run its namespaces and private directories; vectors-run.ts runs and judges them.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const VECTORS_DIR = fileURLToPath(new URL('../vectors/', import.meta.url));

type Obj = Record<string, unknown>;

/** One file a vector puts where a plugin looks for it. */
export interface VectorFile {
  /** The path as the plugins see it (e.g. /run/flannel/subnet.env). */
  path: string;
  text: string;
  /** `doc`: copied from the docs; `env`: written by the test (what a daemon would write). */
  from: 'doc' | 'env';
}

/** One parsed vector. */
export interface Vector {
  id: string;
  header: Record<string, string>;
  kind: 'plugin' | 'conflist' | 'ipam';
  /** `memory`: run in-process on the memory netlink backend (the kernel lacks a link kind). */
  backend: 'kernel' | 'memory';
  /** Whether the same vector also runs against Debian's Go plugins. */
  go: boolean;
  /** The stdin of ADD, as the docs print it (or, for a `base` vector, the base with one field set). */
  text: string;
  config: Obj;
  files: VectorFile[];
  nads: Array<{ namespace: string; name: string; config: string | undefined }>;
  /** Plugin types that always come from the Go plugins (flannel's conflist chains portmap). */
  goPlugins: string[];
  kubeconfigs: string[];
}

function parseVectorText(
  id: string,
  raw: string,
): Omit<Vector, 'text' | 'config'> & { sections: string[][] } {
  const header: Record<string, string> = {};
  const sections: string[][] = [];
  for (const line of raw.split('\n')) {
    if (line.startsWith('--- ')) sections.push([line.slice(4)]);
    else if (sections.length) sections.at(-1)?.push(line);
    else if (line.startsWith('#') || line.trim() === '') continue;
    else {
      const i = line.indexOf(': ');
      if (i < 0) throw new Error(`${id}.vector: header line without "key: value": ${line}`);
      header[line.slice(0, i)] = line.slice(i + 2);
    }
  }
  for (const k of ['source', 'licence', 'excerpt', 'kind', 'go'])
    if (!header[k]) throw new Error(`${id}.vector: header "${k}" is missing`);
  const files: VectorFile[] = [];
  const nads: Vector['nads'] = [];
  for (const [title = '', ...body] of sections) {
    const text = body.join('\n').replace(/\n$/, '');
    const [what, arg = ''] = title.split(' ');
    if (what === 'doc-file' || what === 'env-file')
      files.push({ path: arg, text, from: what === 'doc-file' ? 'doc' : 'env' });
    else if (what === 'nad') {
      const [namespace = 'default', name = ''] = arg.split('/');
      nads.push({ namespace, name, config: text.trim() ? text : undefined });
    }
  }
  return {
    id,
    header,
    kind: header.kind as Vector['kind'],
    backend: header.backend?.startsWith('memory') ? 'memory' : 'kernel',
    go: (header.go ?? '').startsWith('compare'),
    files,
    nads,
    goPlugins: (header['go-plugins'] ?? '').split(/\s+/).filter(Boolean),
    kubeconfigs: (header.k8s ?? '').split(/\s+/).filter(Boolean),
    sections,
  };
}

/** Reads one vector; a `base` vector takes the base's config and files and sets one field. */
export function loadVector(id: string): Vector {
  const p = parseVectorText(id, readFileSync(join(VECTORS_DIR, `${id}.vector`), 'utf8'));
  const section = (name: string) => p.sections.find((s) => s[0] === name || s[0]?.startsWith(`${name} `));
  const { sections, ...rest } = p;
  const cfg = section('config');
  if (cfg) {
    const text = cfg.slice(1).join('\n').replace(/\n$/, '');
    return { ...rest, text, config: JSON.parse(text) as Obj };
  }
  const baseId = p.header.base;
  const field = section('field');
  const envelope = p.header.envelope;
  if (!baseId || (!field && !envelope))
    throw new Error(`${id}.vector: needs a config section, or a base and a field section or envelope`);
  const base = loadVector(baseId);
  // An envelope is the network config a runtime wraps around an ipam section the docs show alone.
  const config: Obj = envelope
    ? { ...(JSON.parse(envelope) as Obj), ...base.config }
    : structuredClone(base.config);
  if (field) {
    const at = field[0]?.split(' ')[1] ?? '';
    const line = field.slice(1).join('\n').trim();
    const i = line.indexOf(':');
    const target = (at ? config[at] : config) as Obj;
    target[line.slice(0, i).trim()] = JSON.parse(line.slice(i + 1).trim());
  }
  return {
    ...rest,
    files: [...base.files, ...rest.files],
    nads: [...base.nads, ...rest.nads],
    kubeconfigs: rest.kubeconfigs.length ? rest.kubeconfigs : base.kubeconfigs,
    text: JSON.stringify(config, null, 2),
    config,
  };
}

/** Every vector id in test/vectors. */
export function vectorIds(): string[] {
  return readdirSync(VECTORS_DIR)
    .filter((f) => f.endsWith('.vector'))
    .map((f) => f.slice(0, -'.vector'.length))
    .sort();
}

/** The spec version of a config: a missing cniVersion is 0.1.0. */
export function versionOf(config: Obj): string {
  return typeof config.cniVersion === 'string' && config.cniVersion !== '' ? config.cniVersion : '0.1.0';
}
