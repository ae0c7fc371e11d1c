// The daemon-mode shim (native/cni-kit-shim.c): compiling its base binary with the system C
// compiler, and installing it for one plugin as a copy with a trailer appended.
//
// The trailer tells the shim its plugin type (it is a copy, never a link, so its own name is not
// trusted), where the plugin's exec-mode Node bundle is, and the plugin's VERSION answer, which
// the shim prints without a socket or Node. Bytes after the ELF image are never mapped, so the
// program runs unchanged. The format is shared with src/delegate/find.ts and the deploy installer.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeAtomic } from './sidecars.js';

/** What starts a trailer: the base binary never contains it (the C source never spells it out whole). */
export const SHIM_MARK = '\n--cni-kit-shim--\n';
const END = '--end--\n';
/** The shim reads the last this many bytes of itself; the whole trailer must fit. */
export const SHIM_TAIL = 4096;

export interface ShimTrailer {
  /** The plugin type the shim names in its requests (the daemon picks the plugin by it). */
  type: string;
  /** The exec-mode Node bundle: absolute, or relative to the shim file's directory. */
  fallback: string;
  /** The plugin's VERSION stdout without its final newline. */
  version: string;
  /** The daemon socket, when not the default /run/cni-kit/daemon.sock. */
  socket?: string;
}

/** The trailer's bytes. Refuses values the line format cannot carry. */
export function formatShimTrailer(t: ShimTrailer): Buffer {
  if (!/^[A-Za-z0-9._-]+$/.test(t.type)) {
    throw new Error(`shim type ${JSON.stringify(t.type)} may use only letters, digits, '.', '_' and '-'`);
  }
  for (const [k, v] of Object.entries(t) as [string, string | undefined][]) {
    if (v === undefined) continue;
    if (v === '' || /[\n\0]/.test(v)) {
      throw new Error(`shim trailer ${k}=${JSON.stringify(v)}: must be one non-empty line without NUL bytes`);
    }
  }
  const lines = [`type=${t.type}`, `fallback=${t.fallback}`, `version=${t.version}`];
  if (t.socket !== undefined) lines.push(`socket=${t.socket}`);
  const out = Buffer.from(`${SHIM_MARK}${lines.join('\n')}\n${END}`);
  if (out.length >= SHIM_TAIL) {
    throw new Error(
      `shim trailer is ${out.length} bytes; it must stay under ${SHIM_TAIL} (a shorter VERSION answer or path)`,
    );
  }
  return out;
}

/** Parses the trailer at the end of `tail` (the last bytes of a file), or undefined. */
export function parseShimTrailer(tail: Buffer): ShimTrailer | undefined {
  const at = tail.lastIndexOf(SHIM_MARK);
  if (at < 0) return undefined;
  const text = tail.subarray(at + SHIM_MARK.length).toString('utf8');
  if (!text.endsWith(`\n${END}`)) return undefined;
  const fields = new Map<string, string>();
  for (const line of text.slice(0, -END.length - 1).split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const [type, fallback, version, socket] = ['type', 'fallback', 'version', 'socket'].map((k) =>
    fields.get(k),
  );
  if (!type || !fallback || !version) return undefined;
  return { type, fallback, version, ...(socket !== undefined ? { socket } : {}) };
}

/** The trailer of an installed shim, or undefined when `file` is not one (or is the base binary). */
export function readShimTrailer(file: string): ShimTrailer | undefined {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const n = Math.min(size, SHIM_TAIL);
    const tail = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const r = readSync(fd, tail, got, n - got, size - n + got);
      if (r === 0) break;
      got += r;
    }
    return parseShimTrailer(tail.subarray(0, got));
  } finally {
    closeSync(fd);
  }
}

/** The program without its trailer: everything before the last trailer marker (a base binary as is). */
export function stripShimTrailer(bin: Buffer): Buffer {
  const from = Math.max(0, bin.length - SHIM_TAIL);
  const at = bin.subarray(from).lastIndexOf(SHIM_MARK);
  return at < 0 ? bin : bin.subarray(0, from + at);
}

export interface InstallShimOptions {
  /** The base shim (a path or its bytes); an installed shim works too, its trailer is replaced. */
  base: string | Buffer;
  /** The shim file to write. */
  outfile: string;
  type: string;
  /** The exec-mode bundle: absolute, or relative to outfile's directory. */
  fallback: string;
  /** The plugin's VERSION stdout (a final newline is dropped). */
  versionLine: string;
  socket?: string | undefined;
}

/**
 * Writes a shim for one plugin. Atomically (a temp file renamed over the target): a runtime may be
 * running the old one, and writing into a running executable fails with "text file busy".
 */
export function installShim(opts: InstallShimOptions): string {
  const base = stripShimTrailer(typeof opts.base === 'string' ? readFileSync(opts.base) : opts.base);
  const trailer = formatShimTrailer({
    type: opts.type,
    fallback: opts.fallback,
    version: opts.versionLine.replace(/\r?\n$/, ''),
    ...(opts.socket !== undefined ? { socket: opts.socket } : {}),
  });
  const outfile = resolve(opts.outfile);
  writeAtomic(outfile, Buffer.concat([base, trailer]), 0o755);
  return outfile;
}

/** The `fallback=` value for a bundle: its path relative to the shim's directory. */
export function fallbackFor(shimFile: string, bundle: string): string {
  return relative(dirname(resolve(shimFile)), resolve(bundle));
}

/** Runs a built bundle once with CNI_COMMAND=VERSION and returns its stdout without the final newline. */
export function pluginVersionLine(bundle: string): string {
  const r = spawnSync(bundle, [], {
    env: { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', CNI_COMMAND: 'VERSION' },
    input: '',
    encoding: 'utf8',
    timeout: 60_000,
  });
  const out = (r.stdout ?? '').replace(/\n$/, '');
  let ok = r.status === 0 && !out.includes('\n');
  try {
    ok &&= Array.isArray((JSON.parse(out) as { supportedVersions?: unknown }).supportedVersions);
  } catch {
    ok = false;
  }
  if (!ok) {
    const why = r.error ? r.error.message : `exit ${r.status ?? r.signal}: ${(r.stdout || r.stderr).trim()}`;
    throw new Error(`${bundle} did not answer VERSION with one line of JSON (${why})`);
  }
  return out;
}

/** native/cni-kit-shim.c beside this module: dist/ in the package, src/cli/ in a checkout. */
export function shimSource(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, '../native/cni-kit-shim.c'), join(here, '../../native/cni-kit-shim.c')];
  const found = candidates.find((c) => existsSync(c));
  if (!found) throw new Error(`the shim's C source is missing (looked for ${candidates.join(', ')})`);
  return found;
}

export interface CompiledShim {
  /** The base binary (no trailer). */
  bytes: Buffer;
  /** Linked statically (runs on any node); false after the dynamic fallback. */
  static: boolean;
  /** Set when the static link failed and a dynamic binary was made instead. */
  warning?: string;
}

const FLAGS = ['-Os', '-s', '-std=gnu11', '-Wall', '-Wextra', '-Werror'];

/**
 * Compiles the base shim with the system C compiler (`cc`, or `$CC`): statically, so one binary
 * runs on every node whatever its libc; dynamically, with a warning, where no static libc is
 * installed.
 */
export function compileShim(opts: { source?: string; cc?: string } = {}): CompiledShim {
  const source = opts.source ?? shimSource();
  const [cc, ...ccArgs] = (opts.cc ?? (process.env.CC || 'cc')).trim().split(/\s+/) as [string, ...string[]];
  const dir = mkdtempSync(join(tmpdir(), 'cni-kit-shim-'));
  try {
    const out = join(dir, 'shim');
    const attempt = (extra: string[]) =>
      spawnSync(cc, [...ccArgs, ...extra, ...FLAGS, '-o', out, source], {
        encoding: 'utf8',
        timeout: 120_000,
      });
    const first = attempt(['-static']);
    if (first.error) {
      throw new Error(
        `cannot compile the cni-kit shim: ${cc}: ${first.error.message} (install a C compiler, e.g. gcc and libc6-dev, or set CC)`,
      );
    }
    if (first.status === 0) return { bytes: readFileSync(out), static: true };
    const second = attempt([]);
    if (second.status !== 0) {
      throw new Error(`${cc} failed to compile ${source}:\n${(second.stderr || first.stderr).trim()}`);
    }
    const why = first.stderr.trim().split('\n').slice(-1)[0] ?? `exit ${first.status}`;
    return {
      bytes: readFileSync(out),
      static: false,
      warning: `the cni-kit shim could not be linked statically (${why}); built it dynamically against this machine's libc (install the static libc, e.g. libc6-dev, for a binary that runs on any node)`,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

let compiled: CompiledShim | undefined;
/** compileShim() once per process (several plugins built in one run share it). */
export function compiledShim(): CompiledShim {
  compiled ??= compileShim();
  return compiled;
}

export interface ShimReport {
  file: string;
  type: string;
  fallback: string;
  static: boolean;
  warning?: string;
}

/**
 * `cni-kit build --shim`: the shim for a bundle just built, its VERSION answer taken from the
 * bundle itself (so a plugin that restricts its versions gets them) and its fallback the bundle's
 * path relative to the shim.
 */
export function shimForBundle(opts: { bundle: string; outfile: string; type: string }): ShimReport {
  const versionLine = pluginVersionLine(resolve(opts.bundle));
  const base = compiledShim();
  const fallback = fallbackFor(opts.outfile, opts.bundle);
  const file = installShim({
    base: base.bytes,
    outfile: opts.outfile,
    type: opts.type,
    fallback,
    versionLine,
  });
  return {
    file,
    type: opts.type,
    fallback,
    static: base.static,
    ...(base.warning ? { warning: base.warning } : {}),
  };
}
