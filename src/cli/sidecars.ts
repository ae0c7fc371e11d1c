// The sidecars of `cni-kit build`: packages a plugin bundle leaves outside and requires from
// <outdir>/lib/ on first use (the heavy clients, and the FFI package koffi with its prebuilt
// binary), plus the esbuild plumbing both the plugin build and the sidecar builds share.
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import type * as Esbuild from 'esbuild';

/** How one package becomes a sidecar. */
export interface SidecarSpec {
  /** The folder under <outdir>/lib. */
  dir: string;
  /** The names the sidecar exports; without it, the package's whole CommonJS module. */
  exports?: readonly string[];
  /**
   * A native addon whose binary comes in per-platform packages named `<native><platform>-<arch>`:
   * its JS is bundled, and the installed package of the building machine's platform is copied to
   * <outdir>/lib/node_modules/, where Node finds it from the sidecar.
   */
  native?: string;
  /** What the plugin does when the sidecar is missing, if it copes (for the build's report). */
  fallback?: string;
}

/**
 * Package → sidecar folder under <outdir>/lib and the names the sidecar exports. Exporting only what
 * cni-kit uses lets esbuild drop the rest (client-node shrinks from ~15 MB to ~5 MB). Keep the list
 * in step with src/k8s/connect.ts, src/k8s/podresources.ts, src/ipam/whereabouts/stores/etcd.ts and the FFI loader
 * (src/sys/libc.ts).
 */
export const SIDECARS: Readonly<Record<string, SidecarSpec>> = {
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
  '@grpc/grpc-js': { dir: 'grpc-js', exports: ['Client', 'credentials', 'Metadata', 'status'] },
  'js-yaml': { dir: 'js-yaml', exports: ['load'] },
  // The library takes the module or its default and calls load() and errno(); the whole module is
  // small (~8 KB minified), so it is kept as koffi's CommonJS entry exports it.
  koffi: { dir: 'koffi', native: '@koromix/koffi-', fallback: 'iproute2 and flock(1)' },
};

export interface SidecarReport {
  package: string;
  file: string;
  bytes: number;
  /**
   * False when the package is not installed (or, for a native addon, has no binary for this
   * platform): the plugin reports it by name if a call needs it, or falls back (`fallback`).
   */
  built: boolean;
  /** Why it was not built. */
  reason?: string;
  /** What the plugin does without it, when it copes. */
  fallback?: string;
  /** A native addon's platform package, copied to <outdir>/lib/node_modules/<package>. */
  native?: { package: string; dir: string; bytes: number };
}

const MODULE_NOT_FOUND = new Set(['ERR_MODULE_NOT_FOUND', 'MODULE_NOT_FOUND']);

/** esbuild, or an error that says how to install it. */
export async function loadEsbuild(): Promise<typeof Esbuild> {
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
export function writeAtomic(file: string, data: Uint8Array | string, mode: number): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${++tmpSeq}.tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, file);
}

export const common: Esbuild.BuildOptions = {
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

/**
 * esbuild plugin: sidecar packages stay outside, required from ./lib/<dir>/index.cjs; records hits
 * with the folders of the files that import them (where the package resolves from).
 */
export function sidecarPlugin(hits: Map<string, Set<string>>): Esbuild.Plugin {
  const names = Object.keys(SIDECARS).map((p) => p.replace(/[/.]/g, '\\$&'));
  return {
    name: 'cni-kit-sidecars',
    setup(b) {
      b.onResolve({ filter: new RegExp(`^(${names.join('|')})$`) }, (args) => {
        const from = hits.get(args.path) ?? new Set<string>();
        hits.set(args.path, from);
        if (args.importer) from.add(dirname(args.importer));
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

/** A package as installed: its version and folder. */
interface Installed {
  version: string;
  dir: string;
}

/** The installed package as seen through `req`, or undefined when it is not installed. */
function installedPackage(req: NodeJS.Require, pkg: string): Installed | undefined {
  let main: string;
  try {
    main = req.resolve(pkg);
  } catch {
    return undefined;
  }
  for (let dir = dirname(main); dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (!existsSync(file)) continue;
    let json: { name?: string; version?: string };
    try {
      json = JSON.parse(readFileSync(file, 'utf8')) as typeof json;
    } catch {
      continue;
    }
    if (json.name === pkg) return { version: json.version ?? '0', dir };
  }
  return { version: '0', dir: dirname(main) };
}

/** The files of a native addon's platform package that the addon's loader needs. */
interface NativePackage {
  name: string;
  version: string;
  dir: string;
  /** Relative to `dir`: package.json, its main file and the `.node` binaries. */
  files: string[];
  bytes: number;
}

/**
 * The platform package of a native addon (`<prefix><platform>-<arch>`) for the machine that builds,
 * as the addon installed at `addonDir` resolves it; or why there is none.
 */
function nativePackage(addonDir: string, addonVersion: string, prefix: string): NativePackage | string {
  const name = `${prefix}${process.platform}-${process.arch}`;
  const req = createRequire(join(addonDir, 'package.json'));
  let json: string;
  let main: string;
  try {
    json = req.resolve(`${name}/package.json`);
    main = req.resolve(name);
  } catch {
    return `no prebuilt binary for ${process.platform}-${process.arch}: ${name} is not installed`;
  }
  const dir = dirname(json);
  const meta = JSON.parse(readFileSync(json, 'utf8')) as { version?: string };
  if (meta.version !== addonVersion) {
    return `${name}@${meta.version} does not match the addon's version ${addonVersion}`;
  }
  const binaries = (readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.node') && !f.split(/[\\/]/).includes('node_modules'))
    .sort();
  if (binaries.length === 0) return `${name} has no .node binary`;
  const files = ['package.json', relative(dir, main), ...binaries];
  const bytes = files.reduce((n, f) => n + statSync(join(dir, f)).size, 0);
  return { name, version: meta.version, dir, files, bytes };
}

/** The entry of a sidecar's bundle. */
function sidecarSource(pkg: string, spec: SidecarSpec, native: NativePackage | undefined): string {
  const id = JSON.stringify(pkg);
  if (spec.exports) return `export { ${spec.exports.join(', ')} } from ${id};`;
  if (!native) return `module.exports = require(${id});`;
  // The addon's own message ("Cannot find the native Koffi module ...") says neither where the
  // binary was meant to be nor that a plugin copied to another platform finds none.
  const msg = JSON.stringify(`${pkg} cannot load its native binary (`);
  const where = JSON.stringify(`); the build put ${native.name} in lib/node_modules/, this machine is `);
  return `try { module.exports = require(${id}); } catch (e) {
  throw new Error(${msg} + e.message + ${where} + process.platform + "-" + process.arch, { cause: e });
}`;
}

/**
 * Builds the sidecar of one package into `libDir`, unless a sidecar of the same package version and
 * entry (its export list), and native binaries, is already there (a stamp file records them).
 */
export async function buildSidecar(
  esbuild: typeof Esbuild,
  searchDirs: readonly string[],
  libDir: string,
  pkg: string,
): Promise<SidecarReport> {
  const spec = SIDECARS[pkg];
  if (!spec) throw new Error(`no sidecar for ${pkg}`);
  const file = join(libDir, spec.dir, 'index.cjs');
  const report = { package: pkg, file, ...(spec.fallback ? { fallback: spec.fallback } : {}) };
  // The first folder the package resolves from: the plugin's, the importing files', then cni-kit's.
  let found: Installed | undefined;
  let resolveDir = '';
  let req: NodeJS.Require | undefined;
  for (const dir of searchDirs) {
    req = createRequire(join(dir, 'noop.js'));
    found = installedPackage(req, pkg);
    resolveDir = dir;
    if (found) break;
  }
  if (!found || !req) return { ...report, bytes: 0, built: false, reason: `${pkg} is not installed` };
  let native: NativePackage | undefined;
  if (spec.native) {
    const n = nativePackage(found.dir, found.version, spec.native);
    if (typeof n === 'string') return { ...report, bytes: 0, built: false, reason: n };
    native = n;
  }
  const nativeDir = native ? join(libDir, 'node_modules', native.name) : '';
  const nativeReport = native
    ? { native: { package: native.name, dir: nativeDir, bytes: native.bytes } }
    : {};
  const stamp = join(libDir, spec.dir, 'stamp');
  const source = sidecarSource(pkg, spec, native);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const want =
    `${pkg}@${found.version} ${hash}` +
    (native ? ` ${native.name}@${native.version} ${native.files.join(',')}` : '');
  if (
    existsSync(file) &&
    existsSync(stamp) &&
    readFileSync(stamp, 'utf8') === want &&
    (!native || native.files.every((f) => existsSync(join(nativeDir, f))))
  ) {
    return { ...report, bytes: statSync(file).size, built: true, ...nativeReport };
  }
  const { outputFiles } = await esbuild.build({
    ...common,
    stdin: {
      contents: source,
      resolveDir,
      loader: 'js',
    },
    outfile: file,
    minify: true,
    plugins: [etcd3ProtoPlugin(req)],
    // The addon's loader requires its platform package, which lib/node_modules/ holds.
    ...(spec.native ? { external: [`${spec.native}*`] } : {}),
  });
  const out = outputFiles?.[0];
  if (!out) throw new Error(`esbuild wrote nothing for ${pkg}`);
  // The binaries first, so a sidecar is never there without them.
  if (native) {
    for (const f of native.files) {
      const mode = statSync(join(native.dir, f)).mode & 0o111 ? 0o755 : 0o644;
      writeAtomic(join(nativeDir, f), readFileSync(join(native.dir, f)), mode);
    }
  }
  writeAtomic(file, out.contents, 0o644);
  writeAtomic(stamp, want, 0o644);
  return { ...report, bytes: out.contents.length, built: true, ...nativeReport };
}

/** Where a plugin's copy of the native netlink engine's core goes, under <outdir>/lib. */
export const NATIVE_CORE_FILE = 'cni-kit/netlink-native.cjs';

/** The core module as cni-kit's source (src/netlink/native/core.ts) or build (dist/netlink-native.*) names it. */
const NATIVE_CORE = /(?:[\\/]netlink[\\/]native[\\/]core\.ts|[\\/]netlink-native\.c?js)$/;

/**
 * esbuild plugin: the native engine's core, which cni-kit/netlink imports on its first flush, stays
 * out of the plugin bundle and is required from ./lib/cni-kit/netlink-native.cjs instead, so a
 * call that never touches the kernel never parses it (about 1 ms per start-up). `found` receives
 * the module's path for `buildNativeCore`.
 */
export function nativeCorePlugin(found: { path?: string }): Esbuild.Plugin {
  return {
    name: 'cni-kit-native-core',
    setup(b) {
      b.onResolve({ filter: /(?:core|netlink-native)(?:\.[cm]?[jt]s)?$/ }, async (args) => {
        if (args.kind !== 'dynamic-import' || (args.pluginData as { inner?: boolean })?.inner)
          return undefined;
        const r = await b.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: { inner: true },
        });
        if (r.errors.length > 0 || !NATIVE_CORE.test(r.path)) return undefined;
        found.path = r.path;
        return { path: `./lib/${NATIVE_CORE_FILE}`, external: true };
      });
    },
  };
}

/** Bundles the native engine's core into <libDir>/cni-kit/netlink-native.cjs (rewritten only when it changed). */
export async function buildNativeCore(
  esbuild: typeof Esbuild,
  source: string,
  libDir: string,
  minify: boolean,
): Promise<SidecarReport> {
  const file = join(libDir, NATIVE_CORE_FILE);
  const { outputFiles } = await esbuild.build({ ...common, entryPoints: [source], outfile: file, minify });
  const out = outputFiles?.[0];
  if (!out) throw new Error(`esbuild wrote nothing for ${source}`);
  const same = existsSync(file) && Buffer.compare(readFileSync(file), Buffer.from(out.contents)) === 0;
  if (!same) writeAtomic(file, out.contents, 0o644);
  return { package: 'cni-kit (native netlink engine)', file, bytes: out.contents.length, built: true };
}
