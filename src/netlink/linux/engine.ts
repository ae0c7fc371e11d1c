// (Kept as one file past ~400 lines: the three execution paths share the segment and marker
// conventions that map a failure back to its op.)
// Runs a queue of ops and reads against a real netns with as few process spawns as possible:
//  - nothing but host-side sysctls: in-process file reads/writes, no spawn;
//  - one run of `ip` lines, optionally followed by one read: one `ip [-n NAME] -batch -` (nsenter for
//    netns paths outside /var/run/netns);
//  - anything else (sysctls inside a netns, several reads, IPv6 rules): one `sh` script, under nsenter
//    when needed, that runs `ip -batch` heredocs, sysctl writes and reads in order, with markers so a
//    failure maps back to the op that caused it.
// A failing op the caller tolerates (existsOk / missingOk) makes the engine re-run from the next op.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { CniError, ErrorCode } from '../../spec/errors.js';
import { fsErrno } from '../errno.js';
import { type Errno, errnoFromText } from '../errors.js';
import { type Engine, type Op, type Read, type ReadResult, runQueue } from '../ops.js';
import { familyFlag, ipLines, needsTolerance, readArgs, readTool, type Tool, toolOf } from './commands.js';
import {
  parseAddrs,
  parseLinks,
  parseQdiscs,
  parseRedirects,
  parseRoutes,
  parseRules,
  parseVlans,
} from './parse.js';

/** One process the engine ran, for tracing (`linuxNetlink({ onSpawn })`). */
export interface SpawnTrace {
  cmd: string;
  args: string[];
  input: string | undefined;
  ms: number;
  code: number;
  stderr: string;
}

interface Proc {
  code: number;
  stdout: string;
  stderr: string;
}

/** Spawns a command, feeds stdin, collects output. */
export function runProcess(cmd: string, args: string[], input?: string): Promise<Proc> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'ENOENT'
          ? new CniError(
              ErrorCode.Internal,
              `netlink: cannot run ${cmd}: not found; the Linux backend needs iproute2 (ip, tc), util-linux (nsenter) and sh`,
            )
          : e,
      ),
    );
    child.on('close', (code) =>
      resolve({
        code: code ?? 1,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      }),
    );
    child.stdin.on('error', () => {});
    child.stdin.end(input ?? '');
  });
}

/** Thrown inside the engine when op `index` (relative to the slice run) failed. */
class OpFailure extends Error {
  constructor(
    readonly index: number,
    readonly errno: Errno,
    readonly text: string,
  ) {
    super(text);
  }
}

type Segment =
  | {
      kind: 'ip';
      /** `ip` or `tc`: both read `-batch -` and take `-n NAME`. */
      tool: Tool;
      flag: string;
      lines: Array<{ text: string; op: number }>;
      ok?: 'exists' | 'missing';
    }
  | { kind: 'sysctl'; op: number; key: string; value: string };

/** Error texts a tolerated op may swallow (iproute2's wording of EEXIST and the "missing" errnos). */
const TOLERATE = {
  exists: [
    'File exists',
    'already assigned',
    'already exists',
    'same name exists',
    'Exclusivity flag on',
    // `ip tuntap add` asks for an exclusive device: an existing name is EBUSY from TUNSETIFF.
    'TUNSETIFF): Device or resource busy',
  ],
  missing: [
    'Cannot find device',
    'No such device',
    'does not exist',
    'No such process',
    'Cannot assign requested address',
    'Address not found',
    'No such file',
    'Cannot find specified qdisc',
    'handle of zero',
  ],
};

/** Where iproute2, util-linux and sh live on common distributions. */
const BIN_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

const NAMED_NETNS = /^\/(?:var\/)?run\/netns\/([^/]+)$/;
const EOF_MARK = 'CNIKIT_BATCH_EOF';
// Listing an IPv6 table nobody has used yet fails; for a reader that is simply an empty table.
const NO_TABLE = /FIB table does not exist/;

function segments(ops: readonly Op[]): Segment[] {
  const segs: Segment[] = [];
  ops.forEach((op, i) => {
    if (op.t === 'sysctl-set') {
      segs.push({ kind: 'sysctl', op: i, key: op.key, value: op.value });
      return;
    }
    const flag = familyFlag(op);
    const tool = toolOf(op) as Tool;
    if (needsTolerance(op)) {
      // A tolerated op runs alone so the script can swallow exactly its expected error.
      segs.push({ kind: 'ip', tool, flag, lines: ipLines(op).map((text) => ({ text, op: i })), ok: op.ok! });
      return;
    }
    const last = segs[segs.length - 1];
    const seg =
      last?.kind === 'ip' && last.tool === tool && last.flag === flag && !last.ok ? last : undefined;
    const target = seg ?? { kind: 'ip' as const, tool, flag, lines: [] };
    if (!seg) segs.push(target);
    for (const text of ipLines(op)) target.lines.push({ text, op: i });
  });
  return segs.filter((s) => s.kind === 'sysctl' || s.lines.length > 0);
}

function parseRead(r: Read, text: string): ReadResult {
  switch (r.t) {
    case 'links':
      return parseLinks(text);
    case 'addrs':
      return parseAddrs(text);
    case 'routes':
      return parseRoutes(text, r.family, r.table);
    case 'rules':
      return parseRules(text, r.family);
    case 'qdiscs':
      return parseQdiscs(text);
    case 'redirects':
      return parseRedirects(text);
    case 'vlans':
      return parseVlans(text);
    case 'sysctl':
      return text;
  }
}

/** The Linux engine; `ownNetns` is the path of this process's own netns (no nsenter needed there). */
export class LinuxEngine implements Engine {
  /** Number of processes spawned so far (the bench and tests read it). */
  spawns = 0;
  constructor(
    readonly ownNetns: string,
    private readonly onSpawn?: (t: SpawnTrace) => void,
  ) {}

  private readonly bins = new Map<string, string>();

  /** Absolute path of a tool: runtimes often exec plugins with a PATH that lacks /usr/sbin. */
  bin(name: string): string {
    let p = this.bins.get(name);
    if (p === undefined) {
      p = BIN_DIRS.map((d) => `${d}/${name}`).find((c) => existsSync(c)) ?? name;
      this.bins.set(name, p);
    }
    return p;
  }

  private async spawn(cmd: string, args: string[], input?: string): Promise<Proc> {
    this.spawns++;
    const t0 = performance.now();
    const p = await runProcess(this.bin(cmd), args, input);
    this.onSpawn?.({ cmd, args, input, ms: performance.now() - t0, code: p.code, stderr: p.stderr });
    return p;
  }

  run(netns: string, ops: readonly Op[], reads: readonly Read[]): Promise<ReadResult[]> {
    return runQueue(
      netns,
      ops,
      reads,
      (slice) => this.once(netns, slice, reads),
      (e) => (e instanceof OpFailure ? { index: e.index, errno: e.errno, detail: e.text } : undefined),
    );
  }

  private nsPrefix(netns: string, tool: string): { cmd: string; pre: string[]; ipNs: string[] } {
    if (netns === this.ownNetns) return { cmd: tool, pre: [], ipNs: [] };
    const m = NAMED_NETNS.exec(netns);
    if (m?.[1]) return { cmd: tool, pre: [], ipNs: ['-n', m[1]] };
    return { cmd: 'nsenter', pre: [`--net=${netns}`, this.bin(tool)], ipNs: [] };
  }

  private async once(netns: string, ops: readonly Op[], reads: readonly Read[]): Promise<ReadResult[]> {
    if (ops.length === 0 && reads.length === 0) return [];
    const segs = segments(ops);
    // A tolerated failure in direct mode would need a second spawn for the rest; the script
    // path swallows it in place, so use that unless the tolerated op is the very last thing.
    const tolerantInside = ops.some((o, i) => needsTolerance(o) && (i < ops.length - 1 || reads.length > 0));
    const host = netns === this.ownNetns;
    if (host && segs.every((s) => s.kind === 'sysctl') && reads.every((r) => r.t === 'sysctl'))
      return this.inProcess(segs as Array<Extract<Segment, { kind: 'sysctl' }>>, reads);
    const read = reads[0];
    const readIp = read ? readArgs(read) : undefined;
    const only = segs[0];
    if (segs.length === 0 && reads.length === 1 && readIp)
      return [await this.directRead(netns, read!, readIp)];
    const readFits =
      reads.length === 0 ||
      (reads.length === 1 && readIp && readTool(read!) === 'ip' && !/^-[46]$/.test(readIp[0] ?? ''));
    if (
      !tolerantInside &&
      segs.length === 1 &&
      only?.kind === 'ip' &&
      only.flag === '' &&
      (reads.length === 0 || (only.tool === 'ip' && readFits))
    )
      return this.directBatch(netns, only, read, readIp);
    return this.script(netns, segs, reads);
  }

  private async inProcess(segs: Array<Extract<Segment, { kind: 'sysctl' }>>, reads: readonly Read[]) {
    for (const s of segs) {
      try {
        await writeFile(`/proc/sys/${s.key}`, s.value);
      } catch (e) {
        throw new OpFailure(s.op, fsErrno(e, true), (e as Error).message);
      }
    }
    const out: ReadResult[] = [];
    for (const [i, r] of reads.entries()) {
      const key = (r as Extract<Read, { t: 'sysctl' }>).key;
      try {
        out.push(await readFile(`/proc/sys/${key}`, 'utf8'));
      } catch (e) {
        throw new OpFailure(-i - 1, fsErrno(e), (e as Error).message);
      }
    }
    return out;
  }

  private async directRead(netns: string, read: Read, args: string[]): Promise<ReadResult> {
    const { cmd, pre, ipNs } = this.nsPrefix(netns, readTool(read));
    const p = await this.spawn(cmd, [...pre, ...ipNs, '-j', ...args]);
    if (p.code !== 0) {
      if (read.t === 'routes' && NO_TABLE.test(p.stderr)) return [];
      throw new OpFailure(-1, errnoFromText(p.stderr), cleanText(p.stderr));
    }
    return parseRead(read, p.stdout);
  }

  private async directBatch(
    netns: string,
    seg: Extract<Segment, { kind: 'ip' }>,
    read: Read | undefined,
    readIp: string[] | undefined,
  ): Promise<ReadResult[]> {
    const { cmd, pre, ipNs } = this.nsPrefix(netns, seg.tool);
    const lines = seg.lines.map((l) => l.text);
    const global = ['-j'];
    if (readIp) {
      // Global flags of the read (-d) go on the command line; the rest is the last batch line.
      const flags = readIp.filter((a) => a.startsWith('-'));
      global.push(...flags);
      lines.push(readIp.filter((a) => !a.startsWith('-')).join(' '));
    }
    const p = await this.spawn(cmd, [...pre, ...ipNs, ...global, '-batch', '-'], `${lines.join('\n')}\n`);
    if (p.code !== 0) {
      const m = /Command failed -:(\d+)/.exec(p.stderr);
      const lineNo = m ? Number(m[1]) - 1 : -1;
      const text = cleanText(p.stderr);
      const hit = seg.lines[lineNo];
      if (hit) throw new OpFailure(hit.op, errnoFromText(text), text);
      if (lineNo === seg.lines.length && read) throw new OpFailure(-1, errnoFromText(text), text);
      throw new OpFailure(seg.lines[0]?.op ?? 0, errnoFromText(text), text);
    }
    return read ? [parseRead(read, p.stdout)] : [];
  }

  private async script(netns: string, segs: Segment[], reads: readonly Read[]): Promise<ReadResult[]> {
    const sh: string[] = [];
    const ip = this.bin('ip');
    // The first links/addrs read rides at the end of the last batch: one `ip` exec fewer. (Only the
    // first: iproute2 6.1 drops addr_info from an `addr show` that follows a `link show` in a batch.)
    const lastSeg = segs[segs.length - 1];
    const first = reads[0];
    const fold =
      lastSeg?.kind === 'ip' &&
      lastSeg.tool === 'ip' &&
      !lastSeg.ok &&
      lastSeg.flag === '' &&
      (first?.t === 'links' || first?.t === 'addrs');
    segs.forEach((s, i) => {
      sh.push(`echo @@${i} >&2`);
      if (fold && s === lastSeg && first) {
        const args = readArgs(first)!;
        sh.push('echo @@R0', `${ip} -j -d -batch - <<'${EOF_MARK}' || exit 3`, ...s.lines.map((l) => l.text));
        sh.push(args.filter((a) => !a.startsWith('-')).join(' '), EOF_MARK);
        return;
      }
      if (s.kind === 'ip' && s.ok) {
        const flag = s.flag ? ` ${s.flag}` : '';
        const pats = TOLERATE[s.ok].map((p) => `*'${p}'*`).join('|');
        for (const l of s.lines)
          sh.push(
            `o=$(${this.bin(s.tool)}${flag} ${shellWords(l.text)} 2>&1) || case "$o" in ${pats}) ;; *) echo "$o" >&2; exit 3;; esac`,
          );
      } else if (s.kind === 'ip') {
        const flag = s.flag ? ` ${s.flag}` : '';
        sh.push(
          `${this.bin(s.tool)}${flag} -batch - <<'${EOF_MARK}' || exit 3`,
          ...s.lines.map((l) => l.text),
          EOF_MARK,
        );
      } else {
        sh.push(`printf '%s' '${s.value}' > /proc/sys/${s.key} || exit 3`);
      }
    });
    reads.forEach((r, i) => {
      if (fold && i === 0) return;
      const args = readArgs(r);
      sh.push(`echo @@r${i} >&2`, `echo @@R${i}`);
      const tool = this.bin(readTool(r));
      if (r.t === 'routes') sh.push(`${ip} -j ${shellWords(args!.join(' '))} 2>&1 || echo @@E`);
      else if (args) sh.push(`${tool} -j ${shellWords(args.join(' '))} || exit 4`);
      // Not the `read` builtin: dash reads byte by byte, which /proc/sys refuses.
      else sh.push(`${this.bin('cat')} /proc/sys/${(r as { key: string }).key} || exit 4`);
    });
    const host = netns === this.ownNetns;
    const cmd = host ? 'sh' : 'nsenter';
    const args = host ? ['-c', sh.join('\n')] : [`--net=${netns}`, this.bin('sh'), '-c', sh.join('\n')];
    const p = await this.spawn(cmd, args);
    if (p.code !== 0) throw scriptFailure(p.stderr, segs);
    const outs: string[] = [];
    let cur = -1;
    for (const line of p.stdout.split('\n')) {
      const m = /^@@R(\d+)$/.exec(line);
      if (m) cur = Number(m[1]);
      else if (cur >= 0) outs[cur] = (outs[cur] ?? '') + line + '\n';
    }
    return reads.map((r, i) => {
      const text = outs[i] ?? '';
      if (!text.includes('@@E')) return parseRead(r, text);
      if (NO_TABLE.test(text)) return [];
      throw new OpFailure(-i - 1, errnoFromText(text), cleanText(text.replace('@@E', '')));
    });
  }
}

/**
 * A batch line as shell words, each single-quoted: interface names may hold `$`, `;`, `|`, `` ` ``
 * and the like (the kernel refuses only '/', ':' and whitespace), which must reach `ip` as they are
 * where a line runs as a command rather than inside a quoted here-document. Validation keeps quotes
 * out of every word; the empty alias `""` of a batch line is the empty word here.
 */
export function shellWords(line: string): string {
  return line
    .split(' ')
    .map((w) => (w === '""' ? "''" : `'${w}'`))
    .join(' ');
}

function scriptFailure(stderr: string, segs: Segment[]): OpFailure {
  const lines = stderr.split('\n');
  let at = -1;
  lines.forEach((l, i) => {
    if (/^@@r?\d+$/.test(l)) at = i;
  });
  const marker = at >= 0 ? lines[at]! : '';
  const raw = lines.slice(at + 1).join('\n') || stderr;
  const text = cleanText(raw);
  const errno = errnoFromText(text);
  if (marker.startsWith('@@r')) return new OpFailure(-Number(marker.slice(3)) - 1, errno, text);
  const seg = segs[at >= 0 ? Number(marker.slice(2)) : 0];
  if (!seg) return new OpFailure(0, errno, text);
  if (seg.kind === 'sysctl') return new OpFailure(seg.op, /I\/O error/.test(text) ? 'EINVAL' : errno, text);
  const m = /Command failed -:(\d+)/.exec(raw);
  const lineNo = m ? Number(m[1]) - 1 : 0;
  // Past the last op line means the folded read failed.
  if (lineNo >= seg.lines.length) return new OpFailure(-1, errno, text);
  const hit = seg.lines[lineNo] ?? seg.lines[0]!;
  return new OpFailure(hit.op, errno, text);
}

function cleanText(s: string): string {
  return s
    .split('\n')
    .filter((l) => l.trim() && !/^Command failed/.test(l) && !/^@@/.test(l))
    .join('; ')
    .trim();
}
