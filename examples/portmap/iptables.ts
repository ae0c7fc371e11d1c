// portmap's iptables backend, in the reference's layout so that either implementation finds and
// removes the other's rules (all in the nat table):
//   PREROUTING, OUTPUT: -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
//   CNI-HOSTPORT-DNAT:  one jump per protocol (multiport, 15 ports a rule) to the container's chain
//                       CNI-DN-<hash of network name + container ID>, with the comment
//                       `dnat name: "<network>" id: "<container>"`
//   CNI-DN-<hash>:      per mapping: mark hairpin (and, for IPv4, localhost) traffic, then DNAT
//   CNI-HOSTPORT-SETMARK sets the masquerade mark; CNI-HOSTPORT-MASQ (first in POSTROUTING)
//                       masquerades what carries it.
// Each family changes through one `iptables-restore --noflush` (atomic) after one `iptables-save`.
// The shared chains are created with -N, which fails when a concurrent ADD created them first; the
// ADD then reads again and retries, so no ADD ever flushes another container's jump.
import { CniError, ErrorCode } from 'cni-kit';
import { type IptablesRunner, spawnIptables } from 'cni-kit/netsetup';
import { type Family, isUnspecified, mappingApplies, type PortmapRules } from './rules.js';

/** The reference's shared chain names (upgrades depend on them never changing). */
export const DNAT_CHAIN = 'CNI-HOSTPORT-DNAT';
export const SETMARK_CHAIN = 'CNI-HOSTPORT-SETMARK';
export const MASQ_CHAIN = 'CNI-HOSTPORT-MASQ';

const crypto = () => process.getBuiltinModule('node:crypto');

/** The reference's 28-character chain name: "CNI-" + prefix + hex sha512(network + containerId). */
export function chainName(prefix: string, network: string, containerId: string): string {
  const hex = crypto()
    .createHash('sha512')
    .update(network + containerId)
    .digest('hex');
  return `CNI-${prefix}${hex}`.slice(0, 28);
}

/** The per-container DNAT chain. */
export const dnatChainName = (network: string, containerId: string): string =>
  chainName('DN-', network, containerId);

/** The comment of the container's jumps in CNI-HOSTPORT-DNAT (cut to iptables' 255 characters). */
export function dnatComment(network: string, containerId: string): string {
  const c = `dnat name: "${network}" id: "${containerId}"`;
  return c.length <= 255 ? c : `${c.slice(0, 253)}...`;
}

/** The masquerade mark of `bit` as the reference writes it ("0x2000/0x2000"). */
export function markDef(bit: number): string {
  const v = `0x${(2 ** bit).toString(16)}`;
  return `${v}/${v}`;
}

/** One rule: the chain it lives in and its arguments after the chain name. */
export interface Rule {
  chain: string;
  args: string[];
}

/** Everything one family needs, before comparing with what is installed. */
export interface IptablesPlan {
  dnatChain: string;
  /** Rules of the container's chain, in order. */
  rules: Rule[];
  /** The jumps into the container's chain from CNI-HOSTPORT-DNAT. */
  entries: Rule[];
  /** The shared chains and their rules (only SETMARK/MASQ when snat without externalSetMarkChain). */
  shared: Array<{ chain: string; rules: Rule[]; prepend?: boolean; entry?: Rule[] }>;
}

/** Port lists of at most 15 ports, as multiport takes them. */
export function splitPorts(ports: number[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < ports.length; i += 15) out.push(ports.slice(i, i + 15).join(','));
  return out;
}

const ipPort = (ip: string, port: number, family: Family) =>
  family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;

/** The rules of one family for a container address ("10.1.0.5/24"), in the reference's order. */
export function planIptables(p: PortmapRules, address: string, family: Family): IptablesPlan {
  const dnatChain = dnatChainName(p.network, p.containerId);
  const comment = dnatComment(p.network, p.containerId);
  const ip = address.split('/')[0] ?? address;
  const setMark = p.externalSetMarkChain ?? SETMARK_CHAIN;
  const byProto = new Map<string, number[]>();
  for (const m of p.mappings) byProto.set(m.protocol, [...(byProto.get(m.protocol) ?? []), m.hostPort]);
  const conditions = (family === 6 ? p.conditionsV6 : p.conditionsV4) ?? [];
  const entries: Rule[] = [];
  for (const proto of [...byProto.keys()].sort()) {
    for (const ports of splitPorts(byProto.get(proto) ?? [])) {
      entries.push({
        chain: DNAT_CHAIN,
        args: [
          '-m',
          'comment',
          '--comment',
          comment,
          '-m',
          'multiport',
          '-p',
          proto,
          '--destination-ports',
          ports,
          ...conditions,
          '-j',
          dnatChain,
        ],
      });
    }
  }
  const rules: Rule[] = [];
  for (const m of p.mappings.filter((x) => mappingApplies(x, family))) {
    const base = ['-p', m.protocol, '--dport', String(m.hostPort)];
    if (m.hostIP !== undefined && !isUnspecified(m.hostIP)) base.push('-d', m.hostIP);
    if (p.snat) {
      const src = p.masqAll ? (family === 6 ? '::/0' : '0.0.0.0/0') : address;
      rules.push({ chain: dnatChain, args: [...base, '-s', src, '-j', setMark] });
      if (family === 4 && !p.masqAll)
        rules.push({ chain: dnatChain, args: [...base, '-s', '127.0.0.1', '-j', setMark] });
    }
    rules.push({
      chain: dnatChain,
      args: [...base, '-j', 'DNAT', '--to-destination', ipPort(ip, m.containerPort, family)],
    });
  }
  const mark = markDef(p.markMasqBit);
  const shared: IptablesPlan['shared'] = [];
  if (p.snat && p.externalSetMarkChain === undefined) {
    shared.push({
      chain: SETMARK_CHAIN,
      rules: [
        {
          chain: SETMARK_CHAIN,
          args: [
            '-m',
            'comment',
            '--comment',
            'CNI portfwd masquerade mark',
            '-j',
            'MARK',
            '--set-xmark',
            mark,
          ],
        },
      ],
    });
    shared.push({
      chain: MASQ_CHAIN,
      rules: [{ chain: MASQ_CHAIN, args: ['-m', 'mark', '--mark', mark, '-j', 'MASQUERADE'] }],
      // First in POSTROUTING: the masquerade rules of bridge/ptp would otherwise see the packet first.
      prepend: true,
      entry: [
        {
          chain: 'POSTROUTING',
          args: ['-m', 'comment', '--comment', 'CNI portfwd requiring masquerade', '-j', MASQ_CHAIN],
        },
      ],
    });
  }
  const local = ['-m', 'addrtype', '--dst-type', 'LOCAL', '-j', DNAT_CHAIN];
  shared.push({
    chain: DNAT_CHAIN,
    rules: [],
    entry: [
      { chain: 'PREROUTING', args: local },
      { chain: 'OUTPUT', args: local },
    ],
  });
  return { dnatChain, rules, entries, shared };
}

/** Quotes an argument for iptables-restore when it holds blanks or quotes. */
export function restoreArg(a: string): string {
  return /^[^\s"'\\]+$/.test(a) ? a : `"${a.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

const line = (op: string, r: Rule) => [op, r.chain, ...r.args.map(restoreArg)].join(' ');

const tools = (family: Family) =>
  family === 4
    ? { cmd: 'iptables', save: 'iptables-save', restore: 'iptables-restore' }
    : { cmd: 'ip6tables', save: 'ip6tables-save', restore: 'ip6tables-restore' };

/**
 * Splits an iptables-save rule into arguments (double quotes with backslash escapes), so a rule we
 * wrote can be told from another by its arguments, whatever order iptables prints them in.
 */
export function splitSaved(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (quoted) {
      if (ch === '\\' && i + 1 < text.length) cur += text[++i];
      else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') {
      quoted = true;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

/** The nat table as iptables-save prints it: chain names and "-A" rules. */
interface Saved {
  chains: Set<string>;
  rules: string[];
}

function parseSaved(text: string): Saved {
  const chains = new Set<string>();
  const rules: string[] = [];
  let inNat = false;
  for (const l of text.split('\n')) {
    if (l.startsWith('*')) inNat = l === '*nat';
    else if (!inNat) continue;
    else if (l.startsWith(':')) chains.add(l.slice(1).split(' ')[0] ?? '');
    else if (l.startsWith('-A ')) rules.push(l);
  }
  return { chains, rules };
}

/** Saved rules of `chain` that jump to `target`. */
function jumpsTo(saved: Saved, target: string, chain?: string): string[] {
  return saved.rules.filter((l) => {
    const a = splitSaved(l);
    return (chain === undefined || a[1] === chain) && a[a.length - 2] === '-j' && a[a.length - 1] === target;
  });
}

/** Whether a saved rule of `chain` has every argument pair of `r` that identifies it. */
function hasSimilar(saved: Saved, r: Rule): boolean {
  // Shared rules are matched by their distinctive arguments only: iptables reorders and expands
  // what it prints ("-p tcp -m tcp", "/32"), and a duplicate would be harmless but untidy.
  const key = r.args.filter((_, i, a) =>
    ['-j', '--mark', '--set-xmark', '--dst-type'].includes(a[i - 1] ?? ''),
  );
  return saved.rules.some((l) => {
    const a = splitSaved(l);
    return a[1] === r.chain && key.every((k) => a.includes(k));
  });
}

async function run(runner: IptablesRunner, cmd: string, args: string[], stdin?: string) {
  const r = await runner(cmd, args, stdin);
  if (r.code === 127)
    throw new CniError(
      ErrorCode.Internal,
      `portmap: ${cmd} is not installed (${r.stderr.trim()})`,
      'install iptables, or set "backend": "nftables"',
    );
  return r;
}

async function save(runner: IptablesRunner, family: Family): Promise<Saved> {
  const t = tools(family);
  const r = await run(runner, t.save, ['-t', 'nat']);
  if (r.code !== 0)
    throw new CniError(
      ErrorCode.Internal,
      `portmap: ${t.save} -t nat failed (exit ${r.code}): ${r.stderr.trim()}`,
      'is the nat table available in this kernel, and are we root?',
    );
  return parseSaved(r.stdout);
}

/** The iptables-restore script that brings `saved` to the plan (the container's chain rebuilt). */
export function restoreScript(saved: Saved, plan: IptablesPlan): string {
  const declare: string[] = [];
  const ops: string[] = [];
  for (const s of plan.shared) {
    if (!saved.chains.has(s.chain)) declare.push(`-N ${s.chain}`);
    for (const r of s.rules) if (!hasSimilar(saved, r)) ops.push(line('-A', r));
    for (const e of s.entry ?? []) {
      if (hasSimilar(saved, e)) continue;
      ops.push(s.prepend ? ['-I', e.chain, '1', ...e.args.map(restoreArg)].join(' ') : line('-A', e));
    }
  }
  // Declaring the container's chain in a --noflush restore creates or empties it: a rebuilt chain.
  const own = [`:${plan.dnatChain} - [0:0]`];
  const stale = jumpsTo(saved, plan.dnatChain).map((l) => `-D ${l.slice(3)}`);
  return [
    '*nat',
    ...own,
    ...declare,
    ...stale,
    ...ops,
    ...plan.rules.map((r) => line('-A', r)),
    ...plan.entries.map((r) => line('-A', r)),
    'COMMIT',
    '',
  ].join('\n');
}

/** Installs one family's rules; retries when a concurrent ADD created a shared chain first. */
export async function forwardIptables(
  plan: IptablesPlan,
  family: Family,
  runner: IptablesRunner = spawnIptables,
): Promise<void> {
  const t = tools(family);
  for (let attempt = 1; ; attempt++) {
    const saved = await save(runner, family);
    const r = await run(runner, t.restore, ['-w', '--noflush'], restoreScript(saved, plan));
    if (r.code === 0) return;
    if (attempt < 5 && /already exists/i.test(r.stderr)) continue;
    throw new CniError(
      ErrorCode.Internal,
      `portmap: ${t.restore} failed (exit ${r.code}): ${r.stderr.trim()}`,
      'check conditionsV4/conditionsV6 and externalSetMarkChain name valid iptables arguments and chains',
    );
  }
}

/**
 * Removes the container's chain (and the pre-1.0 CNI-SN-<hash> chain) and every rule jumping to
 * them, in every family whose iptables works. Shared chains stay, as in the reference. Returns the
 * families it changed.
 */
export async function unforwardIptables(
  network: string,
  containerId: string,
  runner: IptablesRunner = spawnIptables,
): Promise<Family[]> {
  const changed: Family[] = [];
  const own = [dnatChainName(network, containerId), chainName('SN-', network, containerId)];
  for (const family of [4, 6] as const) {
    const t = tools(family);
    const r = await runner(t.save, ['-t', 'nat']);
    // No ip(6)tables or no nat table: no rule of ours can be there either.
    if (r.code !== 0) continue;
    const saved = parseSaved(r.stdout);
    const lines = ['*nat'];
    for (const c of own) {
      lines.push(...jumpsTo(saved, c).map((l) => `-D ${l.slice(3)}`));
      if (saved.chains.has(c)) lines.push(`-F ${c}`, `-X ${c}`);
    }
    if (lines.length === 1) continue;
    lines.push('COMMIT', '');
    const out = await runner(t.restore, ['-w', '--noflush'], lines.join('\n'));
    if (out.code !== 0)
      throw new CniError(
        ErrorCode.Internal,
        `portmap: removing ${own[0]} with ${t.restore} failed (exit ${out.code}): ${out.stderr.trim()}`,
      );
    changed.push(family);
  }
  return changed;
}

/** CHECK of one family: each rule of the plan present (`iptables -C`), or code 999 naming the first missing. */
export async function checkIptables(
  plan: IptablesPlan,
  family: Family,
  runner: IptablesRunner = spawnIptables,
): Promise<void> {
  const t = tools(family);
  const wanted = [
    ...plan.rules,
    ...plan.entries,
    ...plan.shared.flatMap((s) => [...s.rules, ...(s.entry ?? [])]),
  ];
  for (const r of wanted) {
    const out = await run(runner, t.cmd, ['-w', '-t', 'nat', '-C', r.chain, ...r.args]);
    if (out.code !== 0)
      throw new CniError(
        ErrorCode.Internal,
        `CHECK: IPv${family} nat rule missing: -A ${r.chain} ${r.args.map(restoreArg).join(' ')} (${out.stderr.trim() || `exit ${out.code}`})`,
        'run ADD again to restore the port mappings',
      );
  }
}

/** The container IDs of `network` that have a jump in CNI-HOSTPORT-DNAT (for GC). */
export async function iptablesContainers(
  network: string,
  runner: IptablesRunner = spawnIptables,
): Promise<Set<string>> {
  const ids = new Set<string>();
  const prefix = `dnat name: "${network}" id: "`;
  for (const family of [4, 6] as const) {
    const r = await runner(tools(family).save, ['-t', 'nat']);
    if (r.code !== 0) continue;
    for (const l of parseSaved(r.stdout).rules) {
      const a = splitSaved(l);
      if (a[1] !== DNAT_CHAIN) continue;
      const c = a[a.indexOf('--comment') + 1] ?? '';
      if (c.startsWith(prefix) && c.endsWith('"')) ids.add(c.slice(prefix.length, -1));
    }
  }
  return ids;
}
