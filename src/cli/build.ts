// `cni-kit build`: bundles a plugin written against cni-kit into one executable CommonJS file.
//
// A CNI plugin is a new process per call, so what matters is what each call parses. The bundle
// inlines the plugin, cni-kit and small dependencies; the heavy clients only multus and the
// whereabouts Kubernetes/etcd stores load (@kubernetes/client-node, etcd3, js-yaml) become
// sidecars under <outdir>/lib/, required on first use, and are built only when the plugin can
// reach them. esbuild is an optional peer dependency, loaded here only.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import type * as Esbuild from 'esbuild';
import { CliUsageError, parseVerbArgs, type Verb } from './args.js';

/**
 * Package → sidecar folder under <outdir>/lib and the names the sidecar exports. Exporting only what
 * cni-kit uses lets esbuild drop the rest (client-node shrinks from ~15 MB to ~5 MB). Keep the list
 * in step with src/k8s/connect.ts and src/ipam/whereabouts/stores/etcd.ts.
 */
export const SIDECARS: Readonly<Record<string, { dir: string; exports: readonly string[] }>> = {
  etcd3: { dir: 'etcd3', exports: ['Etcd3'] },
  '@kubernetes/client-node': {
    dir: 'kubernetes-client-node',
    exports: [
      'KubeConfig',
      'CoreV1Api',
      'CustomObjectsApi',
      'createConfiguration',
      'ServerConfiguration',
      'setHeaderOptions',
      'PatchStrategy',
      'ApiException',
      'FetchError',
      'AbortError',
    ],
  },
  'js-yaml': { dir: 'js-yaml', exports: ['load'] },
};

export interface BuildOptions {
  /** The plugin's entry module (.ts, .mts, .js, .mjs). */
  entry: string;
  /** The executable to write. Its directory receives lib/ (sidecars) and, when needed, a package.json. */
  outfile: string;
  /** The plugin type written in the marker line; default: the output file's name. */
  type?: string | undefined;
  /** Minify (default true). */
  minify?: boolean | undefined;
  /** Resolve `cni-kit` and `cni-kit/<layer>` to this source folder (building cni-kit's own examples). */
  cniKitSource?: string | undefined;
  /** Where to resolve packages from (default: the entry's folder). */
  resolveDir?: string | undefined;
}

export interface SidecarReport {
  package: string;
  file: string;
  bytes: number;
  /** False when the package is not installed: the plugin reports it by name if a call needs it. */
  built: boolean;
}

export interface BuildReport {
  outfile: string;
  type: string;
  bytes: number;
  sidecars: SidecarReport[];
  /** The package.json written beside the output so Node runs it as CommonJS, if one was written. */
  packageJson?: string;
}

const MODULE_NOT_FOUND = new Set(['ERR_MODULE_NOT_FOUND', 'MODULE_NOT_FOUND']);

/** esbuild, or an error that says how to install it. */
async function loadEsbuild(): Promise<typeof Esbuild> {
  try {
    const mod = (await import('esbuild')) as typeof Esbuild & { default?: typeof Esbuild };
    return typeof mod.build === 'function' ? mod : (mod.default ?? mod);
  } catch (e) {
    if (MODULE_NOT_FOUND.has((e as NodeJS.ErrnoException).code ?? '')) {
      throw new Error('cni-kit build needs esbuild, an optional peer dependency: npm i -D esbuild');
    }
    throw e;
  }
}

let tmpSeq = 0;

/** Writes a file atomically (temp + rename), so a binary being exec'd is never torn. */
function writeAtomic(file: string, data: Uint8Array | string, mode: number): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${++tmpSeq}.tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

const common: Esbuild.BuildOptions = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  legalComments: 'none',
  logLevel: 'silent',
  // CommonJS has require(), so code written for ESM never reaches its import.meta fallback.
  logOverride: { 'empty-import-meta': 'silent' },
  write: false,
};

/** esbuild plugin: `cni-kit` and `cni-kit/<layer>` resolve to a source checkout. */
export function cniKitSourcePlugin(src: string): Esbuild.Plugin {
  return {
    name: 'cni-kit-source',
    setup(b) {
      b.onResolve({ filter: /^cni-kit(\/[a-z0-9]+)?$/ }, (args) => ({
        path: join(src, args.path === 'cni-kit' ? 'index.ts' : `${args.path.slice(8)}/index.ts`),
      }));
    },
  };
}

/** esbuild plugin: sidecar packages stay outside, required from ./lib/<dir>/index.cjs; records hits. */
function sidecarPlugin(hits: Set<string>): Esbuild.Plugin {
  const names = Object.keys(SIDECARS).map((p) => p.replace(/[/.]/g, '\\$&'));
  return {
    name: 'cni-kit-sidecars',
    setup(b) {
      b.onResolve({ filter: new RegExp(`^(${names.join('|')})$`) }, (args) => {
        hits.add(args.path);
        return { path: `./lib/${SIDECARS[args.path]?.dir}/index.cjs`, external: true };
      });
    },
  };
}

/**
 * esbuild plugin: etcd3 reads its gRPC definitions from ../proto/*.proto next to its own files at
 * run time, which a sidecar does not have; the parsed definitions are inlined instead.
 */
export function etcd3ProtoPlugin(
  req: NodeJS.Require = createRequire(join(process.cwd(), 'noop.js')),
): Esbuild.Plugin {
  return {
    name: 'etcd3-proto-inline',
    setup(b) {
      b.onLoad({ filter: /etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
        const loader = dirname(req.resolve('@grpc/proto-loader', { paths: [dirname(args.path)] }));
        const protobuf = req(req.resolve('protobufjs', { paths: [loader] })) as {
          Root: new () => { loadSync(f: string, o: object): void; toJSON(): unknown };
        };
        const root = new protobuf.Root();
        root.loadSync(join(dirname(args.path), '..', 'proto', 'rpc.proto'), { keepCase: true });
        const src = readFileSync(args.path, 'utf8');
        const call = /\(0, proto_loader_1\.loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`,/;
        if (!call.test(src))
          throw new Error('etcd3 changed how it loads rpc.proto; cni-kit build cannot inline it');
        const json = JSON.stringify(root.toJSON());
        return { contents: src.replace(call, `(0, proto_loader_1.fromJSON)(${json},`), loader: 'js' };
      });
    },
  };
}

/** The installed version of a package as seen from `dir`, or undefined when it is not installed. */
function installedVersion(req: NodeJS.Require, pkg: string): string | undefined {
  try {
    const main = req.resolve(pkg);
    let dir = dirname(main);
    while (dir !== dirname(dir)) {
      const file = join(dir, 'package.json');
      if (existsSync(file)) {
        const json = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (json.name === pkg) return json.version ?? '0';
      }
      dir = dirname(dir);
    }
    return '0';
  } catch {
    return undefined;
  }
}

/**
 * Builds the sidecar of one package into `libDir`, unless a sidecar of the same package version and
 * export list is already there (a stamp file records both).
 */
async function buildSidecar(
  esbuild: typeof Esbuild,
  searchDirs: readonly string[],
  libDir: string,
  pkg: string,
): Promise<SidecarReport> {
  const spec = SIDECARS[pkg];
  if (!spec) throw new Error(`no sidecar for ${pkg}`);
  const file = join(libDir, spec.dir, 'index.cjs');
  // The first folder the package resolves from: the plugin's, then cni-kit's own.
  let version: string | undefined;
  let resolveDir = '';
  let req: NodeJS.Require | undefined;
  for (const dir of searchDirs) {
    req = createRequire(join(dir, 'noop.js'));
    version = installedVersion(req, pkg);
    resolveDir = dir;
    if (version !== undefined) break;
  }
  if (version === undefined || !req) return { package: pkg, file, bytes: 0, built: false };
  const stamp = join(libDir, spec.dir, 'stamp');
  const want = `${pkg}@${version} ${createHash('sha256').update(spec.exports.join(',')).digest('hex').slice(0, 16)}`;
  if (existsSync(file) && existsSync(stamp) && readFileSync(stamp, 'utf8') === want) {
    return { package: pkg, file, bytes: readFileSync(file).length, built: true };
  }
  const { outputFiles } = await esbuild.build({
    ...common,
    stdin: {
      contents: `export { ${spec.exports.join(', ')} } from ${JSON.stringify(pkg)};`,
      resolveDir,
      loader: 'js',
    },
    outfile: file,
    minify: true,
    plugins: [etcd3ProtoPlugin(req)],
  });
  const out = outputFiles?.[0];
  if (!out) throw new Error(`esbuild wrote nothing for ${pkg}`);
  writeAtomic(file, out.contents, 0o644);
  writeAtomic(stamp, want, 0o644);
  return { package: pkg, file, bytes: out.contents.length, built: true };
}

/**
 * Node decides CommonJS or ESM for an extensionless file from the nearest package.json. A
 * `{"type":"commonjs"}` beside the output makes the binary CommonJS whatever project it sits in.
 */
function ensureCommonJsScope(outfile: string): string | undefined {
  if (outfile.endsWith('.cjs')) return undefined;
  const file = join(dirname(outfile), 'package.json');
  if (existsSync(file)) {
    let type: unknown;
    try {
      type = (JSON.parse(readFileSync(file, 'utf8')) as { type?: unknown }).type;
    } catch {
      type = 'unreadable';
    }
    if (type === undefined || type === 'commonjs') return undefined;
    throw new Error(
      `${file} says "type": ${JSON.stringify(type)}, so Node would load ${basename(outfile)} as ESM; ` +
        'write the plugin to a folder of its own (e.g. -o dist/bin/<type>) or name it <type>.cjs',
    );
  }
  writeAtomic(file, '{ "type": "commonjs" }\n', 0o644);
  return file;
}

const sidecarBuilds = new Map<string, Promise<SidecarReport>>();

/** Bundles one plugin. Several builds into one folder share its lib/ sidecars. */
export async function buildPlugin(opts: BuildOptions): Promise<BuildReport> {
  const esbuild = await loadEsbuild();
  const entry = resolve(opts.entry);
  if (!existsSync(entry)) throw new CliUsageError(`entry ${opts.entry} does not exist`);
  const outfile = resolve(opts.outfile);
  const type = opts.type ?? basename(outfile).replace(/\.c?js$/, '');
  if (!/^[A-Za-z0-9._-]+$/.test(type)) {
    throw new CliUsageError(
      `plugin type ${JSON.stringify(type)} may use only letters, digits, '.', '_' and '-'`,
    );
  }
  const resolveDir = resolve(opts.resolveDir ?? dirname(entry));
  const searchDirs = [resolveDir, ...(opts.cniKitSource ? [resolve(opts.cniKitSource)] : [])];
  const hits = new Set<string>();
  const plugins = [sidecarPlugin(hits)];
  if (opts.cniKitSource) plugins.unshift(cniKitSourcePlugin(resolve(opts.cniKitSource)));
  let result: Esbuild.BuildResult;
  try {
    result = await esbuild.build({
      ...common,
      entryPoints: [entry],
      outfile,
      nodePaths: [join(resolveDir, 'node_modules')],
      // The second line marks the file as cni-kit's own plugin of this type: delegating plugins
      // read it (never exec it) to run a built-in allocator in-process instead.
      banner: { js: `#!/usr/bin/env node\n// cni-kit plugin ${type}` },
      minify: opts.minify ?? true,
      keepNames: true,
      plugins,
      // import() of a sidecar becomes require(), so CommonJS sidecars expose their named exports.
      supported: { 'dynamic-import': false },
    });
  } catch (e) {
    const errors = (e as { errors?: Esbuild.Message[] }).errors;
    if (!errors) throw e;
    const first = errors
      .slice(0, 5)
      .map((m) => (m.location ? `${m.location.file}:${m.location.line}: ${m.text}` : m.text));
    throw new Error(`esbuild failed on ${opts.entry}:\n  ${first.join('\n  ')}`);
  }
  const out = result.outputFiles?.find((f) => f.path === outfile) ?? result.outputFiles?.[0];
  if (!out) throw new Error(`esbuild wrote nothing for ${opts.entry}`);
  const packageJson = ensureCommonJsScope(outfile);
  writeAtomic(outfile, out.contents, 0o755);
  const libDir = join(dirname(outfile), 'lib');
  const sidecars: SidecarReport[] = [];
  for (const pkg of [...hits].sort()) {
    // Parallel builds into one folder share one build of each sidecar.
    const key = `${libDir}\0${pkg}`;
    let pending = sidecarBuilds.get(key);
    if (!pending) {
      pending = buildSidecar(esbuild, searchDirs, libDir, pkg);
      sidecarBuilds.set(key, pending);
      pending.catch(() => sidecarBuilds.delete(key));
    }
    sidecars.push(await pending);
  }
  return { outfile, type, bytes: out.contents.length, sidecars, ...(packageJson ? { packageJson } : {}) };
}

const HELP = `usage: cni-kit build <entry.ts|js> -o <file> [options]

Bundles a CNI plugin written against cni-kit into one executable CommonJS file with a shebang.
Heavy clients the plugin can reach (@kubernetes/client-node, etcd3, js-yaml) are written as
sidecars to <outdir>/lib/ and loaded on first use: install a plugin by copying the file, together
with lib/ when the build lists sidecars. Needs esbuild (npm i -D esbuild).

options:
  -o, --out <file>        the executable to write (its name is the plugin type by default)
      --type <type>       the plugin type for the marker line (default: the output's name)
      --no-minify         keep the output readable
      --cni-kit-source <dir>  resolve cni-kit to a source checkout (developing cni-kit itself)
      --json              print the build report as JSON
  -h, --help              this help`;

export const buildVerb: Verb = {
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseVerbArgs(argv, {
      out: { type: 'string', short: 'o' },
      type: { type: 'string' },
      'no-minify': { type: 'boolean' },
      'cni-kit-source': { type: 'string' },
      json: { type: 'boolean' },
    });
    if (positionals.length !== 1) throw new CliUsageError('give exactly one entry file');
    if (!values.out) throw new CliUsageError('-o <file> is required');
    const report = await buildPlugin({
      entry: positionals[0] as string,
      outfile: values.out,
      type: values.type,
      minify: !values['no-minify'],
      cniKitSource: values['cni-kit-source'],
    });
    if (values.json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return 0;
    }
    const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
    process.stdout.write(`built ${report.outfile} (${report.type}, ${kb(report.bytes)})\n`);
    for (const s of report.sidecars) {
      process.stdout.write(
        s.built
          ? `  sidecar ${s.package}: ${s.file} (${kb(s.bytes)})\n`
          : `  sidecar ${s.package}: not installed; calls that need it fail naming it (npm i ${s.package})\n`,
      );
    }
    return 0;
  },
};
