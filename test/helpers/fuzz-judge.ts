// How the fuzz harness judges a case: the protocol invariants of one run, the leftover comparison
// of two snapshots (src/conform's diff plus FUZZ_BY_DESIGN, the one list of what may stay behind
// by design), named netns a case's runs left in /run/netns, and files under the machine's CNI
// state dirs that name the run.
import { spawnSync } from 'node:child_process';
import { type Dirent, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { BY_DESIGN_LEFTOVERS } from '../../src/conform/allowlist.js';
import { diffNetSnapshots } from '../../src/conform/snapshot.js';
import { checkErrorJson, checkResult, isObj, type Json } from '../../src/conform/validate.js';
import { FUZZ_RUN_TIMEOUT_MS, type FuzzCall, KNOWN_VERSIONS, type WorldSnapshot } from './fuzz.js';

/**
 * What may stay behind after DEL (or after a failed ADD) by design: the ONE list the fuzz suites
 * consult. Links, data files and firewall chains come from src/conform's BY_DESIGN_LEFTOVERS (the
 * bridge device and its VLAN gateway link, host-local's `last_reserved_ip.*` and `lock`, the
 * whereabouts file store's `cursor`, the shared CNI-FORWARD/CNI-HOSTPORT-* chains and rules that
 * name no container); sysctls, qdiscs and conntrack are never compared (the reference leaves the
 * sysctls it sets too). What the fuzz harness adds: nothing the plugins write may stay, and the
 * runtime-side files the harness itself made (the debug plugin's record file, flannel's
 * subnet.env, multus' conf dir) live outside the data dir that is compared.
 */
export const FUZZ_BY_DESIGN = {
  /** `plugin` is the binary that ran: it reads its config as its own, whatever `type` says. */
  sharedLinks: (config: unknown, plugin?: string): string[] =>
    isObj(config as Json)
      ? BY_DESIGN_LEFTOVERS.sharedLinks({
          ...(config as Record<string, unknown>),
          ...(plugin ? { type: plugin } : {}),
        })
      : [],
  isDataFile: (base: string): boolean => BY_DESIGN_LEFTOVERS.isDataFile(base),
  notCompared: BY_DESIGN_LEFTOVERS.notCompared,
};

/** What differs between two snapshots of a case, minus FUZZ_BY_DESIGN. */
export function leftovers(
  before: WorldSnapshot,
  after: WorldSnapshot,
  opts: { config: unknown; runTag: string; plugin?: string; ignoreLinks?: ReadonlySet<string> },
): string[] {
  // A shared link is the plugin's own bridge: one it created, or a bridge that was there. A
  // config naming some other existing link (a veth as "bridge", F12) gets no pass for changing it.
  const shared = FUZZ_BY_DESIGN.sharedLinks(opts.config, opts.plugin).filter((name) => {
    const was = before.node.links.get(name);
    return was === undefined || was.kind === 'bridge' || name.includes('.');
  });
  const ctx = {
    kitLinks: opts.ignoreLinks ?? new Set<string>(),
    sharedLinks: new Set(shared),
    runTag: opts.runTag,
  };
  const out = diffNetSnapshots(before.node, after.node, ctx).map((p) => `node: ${p}`);
  if (before.container && after.container) {
    out.push(
      ...diffNetSnapshots(before.container, after.container, { ...ctx, sharedLinks: new Set() }).map(
        (p) => `container: ${p}`,
      ),
    );
  }
  for (const k of after.keys ?? []) {
    // The round-robin hint of a pool may stay, like host-local's last_reserved_ip.
    if (!before.keys?.has(k) && !FUZZ_BY_DESIGN.isDataFile(k.slice(k.lastIndexOf('/') + 1))) {
      out.push(`etcd key ${k} left behind`);
    }
  }
  for (const f of after.files) {
    if (before.files.has(f)) continue;
    if (!FUZZ_BY_DESIGN.isDataFile(f.slice(f.lastIndexOf('/') + 1))) out.push(`file ${f} left behind`);
  }
  return out;
}

/**
 * Named network namespaces in /run/netns that runs of a case left: cni-kit names its temporary
 * ones `cnikit-<pid>-<rand>`, so one carrying a pid of the case's runs is theirs (a name match
 * alone would also catch a namespace another worker's run is using right now), and host-device
 * names its one per attachment (`expected`: `cnikit-hd-<sha256 of containerID/ifname>`). Each is listed with
 * the links it holds, then deleted (the harness's own cleanup).
 */
export function strayNetns(
  pids: ReadonlySet<number>,
  known: ReadonlySet<string>,
  expected: ReadonlySet<string> = new Set(),
): string[] {
  const found: string[] = [];
  let names: string[];
  try {
    names = readdirSync('/run/netns');
  } catch {
    return found;
  }
  for (const name of names) {
    if (known.has(name)) continue;
    const m = /^[a-z]+-(\d+)-[a-z0-9]+$/.exec(name);
    if (!expected.has(name) && (!m || !pids.has(Number(m[1])))) continue;
    const r = spawnSync('ip', ['-n', name, '-br', 'link'], { encoding: 'utf8' });
    const links = r.stdout
      .split('\n')
      .map((l) => l.split(/\s+/)[0]?.replace(/@.*/, '') ?? '')
      .filter((l) => l && l !== 'lo');
    found.push(`netns ${name} left behind${links.length ? ` holding ${links.join(', ')}` : ''}`);
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  }
  return found;
}

/** Files under the machine's CNI state dirs whose path contains one of `needles` (a leak). */
export function machineStateNaming(needles: string[]): string[] {
  const found: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 4) return;
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (needles.some((n) => n && p.includes(n))) found.push(p);
      if (e.isDirectory()) walk(p, depth + 1);
    }
  };
  for (const d of ['/var/lib/cni', '/run/cni']) walk(d, 0);
  return found;
}

const STACK = /\n\s+at\s+\S|\(\S+\.(?:[cm]?js|ts):\d+:\d+\)|\bat\s+\S+\s+\(\/\S+:\d+:\d+\)/;
/** Text a message must never show: internals leaking instead of a named field and a fix (F17). */
const INTERNALS =
  /\bundefined\b|\[object Object\]|\b(?:TypeError|ReferenceError|RangeError|SyntaxError)\b|is not a function|Cannot read propert/;

/** A message that is a Node system error as it is: `ECODE: text, syscall 'path'`. */
const RAW_ERRNO = /^(E[A-Z]{2,}): [^,]+, [a-z_]+(?: '|$)/;

/**
 * The protocol invariants of one run: it finished within its bound, printed exactly one JSON
 * document (none for a successful DEL/CHECK), no stack trace, exit 0 with a result for ADD or a
 * non-zero exit with a CNI error (integer code, string msg) whose text names no internals.
 */
export function protocolProblems(call: FuzzCall, expectVersion?: string): string[] {
  const p: string[] = [];
  const what = call.command;
  if (call.timedOut) p.push(`${what} ran past its ${FUZZ_RUN_TIMEOUT_MS} ms bound and was killed`);
  if (STACK.test(call.stdout)) p.push(`${what} printed a stack trace on stdout`);
  if (call.exitCode === null) {
    if (!call.timedOut) p.push(`${what} died by ${call.signal ?? 'an unknown cause'}`);
    return p;
  }
  if (call.exitCode === 0) {
    if (what === 'ADD') {
      if (call.jsonError !== undefined) p.push(`ADD exit 0: ${call.jsonError}`);
      else {
        const own =
          isObj(call.json ?? null) && typeof (call.json as { cniVersion?: unknown }).cniVersion === 'string'
            ? String((call.json as { cniVersion: string }).cniVersion)
            : '';
        // A config at a version the spec defines gets a result at that version; otherwise (a
        // version the plugin chose to read leniently) the result must be valid at its own.
        const known = (x: string | undefined): x is string =>
          x !== undefined && (KNOWN_VERSIONS as readonly string[]).includes(x);
        const v = known(expectVersion) ? expectVersion : own;
        if ((KNOWN_VERSIONS as readonly string[]).includes(v)) {
          for (const r of checkResult(call.json ?? null, v)) p.push(`ADD result: ${r}`);
        } else p.push(`ADD result has cniVersion ${JSON.stringify(v)}`);
      }
    } else if (call.stdout.trim() !== '') {
      p.push(`${what} exit 0 but printed ${JSON.stringify(call.stdout.slice(0, 120))}`);
    }
    return p;
  }
  if (call.jsonError !== undefined) {
    p.push(`${what} exit ${call.exitCode}: ${call.jsonError}`);
    return p;
  }
  for (const e of checkErrorJson(call.json ?? null)) p.push(`${what} error JSON: ${e}`);
  const e = call.json as { msg?: unknown; details?: unknown };
  const text = `${typeof e.msg === 'string' ? e.msg : ''} ${typeof e.details === 'string' ? e.details : ''}`;
  const bad = INTERNALS.exec(text);
  if (bad) p.push(`${what} error names internals (${JSON.stringify(bad[0])}): ${text.trim().slice(0, 200)}`);
  // Node's own error text (`ENAMETOOLONG: name too long, mkdir '...'`) instead of a CNI message
  // naming the field and the limit (F14, F17).
  const raw = typeof e.msg === 'string' ? RAW_ERRNO.exec(e.msg) : null;
  if (raw) p.push(`${what} error is raw errno text (${raw[1]}): ${String(e.msg).slice(0, 200)}`);
  return p;
}

/** The error code of a failed run, or undefined. */
export function errorCode(call: FuzzCall): number | undefined {
  if (call.exitCode === 0 || !isObj(call.json ?? null)) return undefined;
  const c = (call.json as { code?: unknown }).code;
  return typeof c === 'number' ? c : undefined;
}

/** "code N: msg" of a failed run, for messages. */
export function said(call: FuzzCall): string {
  if (call.timedOut) return 'timed out';
  if (call.killed) return 'killed';
  if (isObj(call.json ?? null)) {
    const j = call.json as { code?: unknown; msg?: unknown };
    return `code ${String(j.code)}: ${String(j.msg).slice(0, 160)}`;
  }
  return (call.stdout || call.stderr || `exit ${call.exitCode}`).trim().slice(0, 160);
}
