// `cni-kit build`: bundles a plugin written against cni-kit into one executable CommonJS file.
//
// A CNI plugin is a new process per call, so what matters is what each call parses. The bundle
// inlines the plugin, cni-kit and small dependencies; what only some calls need stays in files
// under <outdir>/lib/, required on first use (sidecars.ts): the heavy clients multus and the
// whereabouts Kubernetes/etcd stores load (@kubernetes/client-node, etcd3, js-yaml), the FFI
// package koffi with its prebuilt binary, and the native netlink engine's core. esbuild is an
// optional peer dependency, loaded here only.
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type * as Esbuild from 'esbuild';
import { CliUsageError, parseVerbArgs, type Verb } from './args.js';
import { type ShimReport, shimForBundle } from './shim.js';
import {
  buildNativeCore,
  buildSidecar,
  cniKitSourcePlugin,
  common,
  loadEsbuild,
  nativeCorePlugin,
  SIDECARS,
  type SidecarReport,
  sidecarPlugin,
  writeAtomic,
} from './sidecars.js';

export {
  cniKitSourcePlugin,
  etcd3ProtoPlugin,
  SIDECARS,
  type SidecarReport,
  type SidecarSpec,
} from './sidecars.js';

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

export interface BuildReport {
  outfile: string;
  type: string;
  bytes: number;
  sidecars: SidecarReport[];
  /** The package.json written beside the output so Node runs it as CommonJS, if one was written. */
  packageJson?: string;
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
  const hits = new Map<string, Set<string>>();
  const core: { path?: string } = {};
  const plugins = [nativeCorePlugin(core), sidecarPlugin(hits)];
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
      // Which sidecar imports survive tree shaking (a module re-exported by a cni-kit layer is
      // resolved even when the plugin never calls into it).
      metafile: true,
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
  const kept = new Set(
    Object.values(result.metafile?.outputs ?? {}).flatMap((o) => o.imports.map((i) => i.path)),
  );
  const reached = [...hits].filter(
    ([pkg]) => !result.metafile || kept.has(`./lib/${SIDECARS[pkg]?.dir}/index.cjs`),
  );
  const sidecars: SidecarReport[] = [];
  for (const [pkg, importers] of reached.sort(([a], [b]) => (a < b ? -1 : 1))) {
    // Parallel builds into one folder share one build of each sidecar.
    const key = `${libDir}\0${pkg}`;
    let pending = sidecarBuilds.get(key);
    if (!pending) {
      const searchDirs = [
        resolveDir,
        ...importers,
        ...(opts.cniKitSource ? [resolve(opts.cniKitSource)] : []),
      ];
      pending = buildSidecar(esbuild, searchDirs, libDir, pkg);
      sidecarBuilds.set(key, pending);
      pending.catch(() => sidecarBuilds.delete(key));
    }
    sidecars.push(await pending);
  }
  if (core.path) sidecars.push(await buildNativeCore(esbuild, core.path, libDir, opts.minify ?? true));
  return { outfile, type, bytes: out.contents.length, sidecars, ...(packageJson ? { packageJson } : {}) };
}

const HELP = `usage: cni-kit build <entry.ts|js> -o <file> [options]

Bundles a CNI plugin written against cni-kit into one executable CommonJS file with a shebang.
Heavy clients the plugin can reach (@kubernetes/client-node, etcd3, js-yaml) and the FFI package
koffi (with its binary for this machine's platform, in lib/node_modules/) are written as sidecars
to <outdir>/lib/ and loaded on first use: install a plugin by copying the file, together with lib/
when the build lists sidecars. Needs esbuild (npm i -D esbuild).

options:
  -o, --out <file>        the executable to write (its name is the plugin type by default)
      --type <type>       the plugin type for the marker line (default: the output's name)
      --no-minify         keep the output readable
      --cni-kit-source <dir>  resolve cni-kit to a source checkout (developing cni-kit itself)
      --shim <file>       also write the daemon-mode shim for this plugin: a small native program
                          (compiled with the system C compiler, cc or $CC) that forwards each call
                          to the cni-kit daemon and runs the bundle itself when no daemon answers
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
      shim: { type: 'string' },
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
    let shim: ShimReport | undefined;
    if (values.shim) {
      shim = shimForBundle({ bundle: report.outfile, outfile: values.shim, type: report.type });
      if (shim.warning) process.stderr.write(`warning: ${shim.warning}\n`);
    }
    if (values.json) {
      process.stdout.write(`${JSON.stringify(shim ? { ...report, shim } : report, null, 2)}\n`);
      return 0;
    }
    const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
    process.stdout.write(`built ${report.outfile} (${report.type}, ${kb(report.bytes)})\n`);
    if (shim)
      process.stdout.write(
        `  shim ${shim.file} (fallback=${shim.fallback}${shim.static ? '' : ', dynamic'})\n`,
      );
    for (const s of report.sidecars) {
      if (s.built) {
        process.stdout.write(`  sidecar ${s.package}: ${s.file} (${kb(s.bytes)})\n`);
        if (s.native) {
          process.stdout.write(`    binary ${s.native.package}: ${s.native.dir} (${kb(s.native.bytes)})\n`);
        }
      } else if (s.fallback) {
        process.stdout.write(
          `  sidecar ${s.package}: not built (${s.reason}); the plugin falls back to ${s.fallback}\n`,
        );
      } else {
        process.stdout.write(
          `  sidecar ${s.package}: not installed; calls that need it fail naming it (npm i ${s.package})\n`,
        );
      }
    }
    return 0;
  },
};
