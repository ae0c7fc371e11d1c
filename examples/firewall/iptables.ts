// The firewall plugin's iptables layout, the reference's so either implementation finds the other's
// rules: the filter chain CNI-FORWARD reached from FORWARD, an admin chain reached first from
// CNI-FORWARD, and per container address an ACCEPT for what it sends and, with conntrack, for
// replies to it. The ingress policies add the two CNI-ISOLATION-STAGE chains per family.
// Rules are written and compared in the form iptables-save prints them, so a rule is "there" when
// its line is in the save output, whoever wrote it. Each family is read once (iptables-save) and
// changed once (iptables-restore --noflush, atomic); missing chains are created with -N first,
// because declaring an existing chain in a --noflush restore would empty it.
import { CniError, ErrorCode } from 'cni-kit';
import type { IptablesRunner } from 'cni-kit/netsetup';

/** The chain every container's rules live in (fixed in the reference). */
export const FORWARD_CHAIN = 'CNI-FORWARD';
/** The admin chain's default name. */
export const DEFAULT_ADMIN_CHAIN = 'CNI-ADMIN';
/** The isolation chains of the same-bridge and isolated ingress policies. */
export const STAGE1 = 'CNI-ISOLATION-STAGE-1';
export const STAGE2 = 'CNI-ISOLATION-STAGE-2';

const FORWARD_COMMENT = 'CNI firewall plugin rules';
const ADMIN_COMMENT = 'CNI firewall plugin admin overrides';
const SHARED_POLICY_COMMENT = 'CNI firewall plugin rules (ingressPolicy: same-bridge|isolated)';
const policyComment = (p: string) => `CNI firewall plugin rules (ingressPolicy: ${p})`;
const comment = (text: string) => `-m comment --comment "${text}"`;

/** An IP family as the tools name it. */
export type Family = 4 | 6;

/** The ingress policies; "open" adds nothing. */
export type IngressPolicy = 'open' | 'same-bridge' | 'isolated';

/** The jump from FORWARD to CNI-FORWARD (without "-A FORWARD"). */
export const forwardJump = (): string => `${comment(FORWARD_COMMENT)} -j ${FORWARD_CHAIN}`;
/** The jump from CNI-FORWARD to the admin chain. */
export const adminJump = (admin: string): string => `${comment(ADMIN_COMMENT)} -j ${admin}`;

/** A container address as a host match: "10.1.0.5/32", "fd00::5/128". */
export function hostMatch(ip: string, family: Family): string {
  return `${ip}/${family === 4 ? 32 : 128}`;
}

/** The two CNI-FORWARD rules of one container address (`host` from {@link hostMatch}). */
export function containerRules(host: string): [string, string] {
  return [`-d ${host} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`, `-s ${host} -j ACCEPT`];
}

/** One rule the isolation layout needs: where, how it is added, and the forms that count as it. */
export interface IsolationRule {
  chain: string;
  /** Inserted at the top (before the chain's RETURN) or appended. */
  at: 'top' | 'end';
  rule: string;
  /**
   * The rule as older reference releases wrote it (1.1.1 gave every isolation rule the
   * "(ingressPolicy: same-bridge)" comment): found, it counts as present and is not duplicated.
   */
  alsoAccept: string[];
}

/**
 * The isolation rules of a bridge, in the order they are ensured (the reference's): FORWARD's jump
 * to stage 1 (inserted after CNI-FORWARD's, so it ends up above it), stage 1's rule for traffic
 * leaving the bridge (and for "isolated" the drop of traffic between its ports), stage 1's RETURN,
 * stage 2's drop of traffic into the bridge and its RETURN.
 */
export function isolationRules(bridge: string, policy: Exclude<IngressPolicy, 'open'>): IsolationRule[] {
  const old = (rule: string) =>
    rule.replace(/--comment "[^"]*"/, `--comment "${policyComment('same-bridge')}"`);
  const mk = (chain: string, at: 'top' | 'end', rule: string): IsolationRule => ({
    chain,
    at,
    rule,
    alsoAccept: old(rule) === rule ? [] : [old(rule)],
  });
  const rules = [
    mk('FORWARD', 'top', `${comment(SHARED_POLICY_COMMENT)} -j ${STAGE1}`),
    mk(STAGE1, 'top', `-i ${bridge} ! -o ${bridge} ${comment(policyComment(policy))} -j ${STAGE2}`),
  ];
  if (policy === 'isolated')
    rules.push(mk(STAGE1, 'top', `-i ${bridge} -o ${bridge} ${comment(policyComment(policy))} -j DROP`));
  rules.push(
    mk(STAGE1, 'end', `${comment(SHARED_POLICY_COMMENT)} -j RETURN`),
    mk(STAGE2, 'top', `-o ${bridge} ${comment(SHARED_POLICY_COMMENT)} -j DROP`),
    mk(STAGE2, 'end', `${comment(SHARED_POLICY_COMMENT)} -j RETURN`),
  );
  return rules;
}

/** The filter table as iptables-save printed it: chain names and each chain's rules in order. */
export interface FilterTable {
  chains: Set<string>;
  /** Per chain, its rules without the leading "-A <chain> ", whitespace collapsed. */
  rules: Map<string, string[]>;
}

const norm = (s: string) => s.trim().replace(/\s+/g, ' ');

/** Parses the `*filter` section of iptables-save output. */
export function parseFilter(saved: string): FilterTable {
  const t: FilterTable = { chains: new Set(), rules: new Map() };
  let inFilter = false;
  for (const raw of saved.split('\n')) {
    const l = raw.trim();
    if (l.startsWith('*')) inFilter = l === '*filter';
    if (!inFilter) continue;
    if (l.startsWith(':')) t.chains.add(l.slice(1).split(' ')[0] ?? '');
    const m = /^-A (\S+) (.*)$/.exec(l);
    if (m?.[1] && m[2] !== undefined) {
      const list = t.rules.get(m[1]) ?? [];
      list.push(norm(m[2]));
      t.rules.set(m[1], list);
    }
  }
  return t;
}

/** Whether `chain` holds `rule` (or one of its accepted older forms). */
export function hasRule(
  t: FilterTable,
  chain: string,
  rule: string,
  alsoAccept: readonly string[] = [],
): boolean {
  const list = t.rules.get(chain) ?? [];
  return [rule, ...alsoAccept].some((r) => list.includes(norm(r)));
}

/** What ADD asks for in one family. */
export interface FamilyRequest {
  hosts: string[];
  admin: string;
  /** Set for the same-bridge and isolated policies. */
  isolation?: { bridge: string; policy: Exclude<IngressPolicy, 'open'> } | undefined;
}

/** The changes one ADD makes in one family: chains to create, then restore lines. */
export interface FamilyPlan {
  newChains: string[];
  lines: string[];
  /** The container rules this ADD appended (what a rollback removes). */
  added: Array<[string, string]>;
}

/**
 * Plans an ADD in one family against the table as it is: only what is missing is added, so a
 * repeated ADD (or one after the Go plugin's) changes nothing.
 */
export function planAdd(t: FilterTable, req: FamilyRequest): FamilyPlan {
  const plan: FamilyPlan = { newChains: [], lines: [], added: [] };
  const ensureChain = (c: string) => {
    if (!t.chains.has(c) && !plan.newChains.includes(c)) plan.newChains.push(c);
  };
  if (req.hosts.length > 0) {
    ensureChain(FORWARD_CHAIN);
    ensureChain(req.admin);
    if (!hasRule(t, 'FORWARD', forwardJump())) plan.lines.push(`-I FORWARD 1 ${forwardJump()}`);
    if (!hasRule(t, FORWARD_CHAIN, adminJump(req.admin)))
      plan.lines.push(`-I ${FORWARD_CHAIN} 1 ${adminJump(req.admin)}`);
    for (const h of req.hosts) {
      for (const r of containerRules(h)) {
        if (hasRule(t, FORWARD_CHAIN, r) || plan.added.some(([, x]) => x === r)) continue;
        plan.lines.push(`-A ${FORWARD_CHAIN} ${r}`);
        plan.added.push([FORWARD_CHAIN, r]);
      }
    }
  }
  if (req.isolation) {
    ensureChain(STAGE1);
    ensureChain(STAGE2);
    for (const r of isolationRules(req.isolation.bridge, req.isolation.policy)) {
      if (hasRule(t, r.chain, r.rule, r.alsoAccept)) continue;
      plan.lines.push(r.at === 'top' ? `-I ${r.chain} 1 ${r.rule}` : `-A ${r.chain} ${r.rule}`);
    }
  }
  return plan;
}

/** The restore lines that delete every copy of the given rules present in `t`. */
export function planDelete(t: FilterTable, rules: ReadonlyArray<readonly [string, string]>): string[] {
  const out: string[] = [];
  for (const [chain, rule] of rules) {
    const n = (t.rules.get(chain) ?? []).filter((r) => r === norm(rule)).length;
    for (let i = 0; i < n; i++) out.push(`-D ${chain} ${rule}`);
  }
  return out;
}

/** What CHECK finds missing in one family (empty: all there). */
export function missingRules(t: FilterTable, req: FamilyRequest): string[] {
  const miss: string[] = [];
  const chain = (c: string) => {
    if (!t.chains.has(c)) miss.push(`chain ${c}`);
  };
  if (req.hosts.length > 0) {
    chain(FORWARD_CHAIN);
    chain(req.admin);
    if (!hasRule(t, 'FORWARD', forwardJump())) miss.push(`-A FORWARD ${forwardJump()}`);
    if (!hasRule(t, FORWARD_CHAIN, adminJump(req.admin)))
      miss.push(`-A ${FORWARD_CHAIN} ${adminJump(req.admin)}`);
    for (const h of req.hosts)
      for (const r of containerRules(h))
        if (!hasRule(t, FORWARD_CHAIN, r)) miss.push(`-A ${FORWARD_CHAIN} ${r}`);
  }
  if (req.isolation) {
    chain(STAGE1);
    chain(STAGE2);
    for (const r of isolationRules(req.isolation.bridge, req.isolation.policy))
      if (!hasRule(t, r.chain, r.rule, r.alsoAccept)) miss.push(`-A ${r.chain} ${r.rule}`);
  }
  return miss;
}

const tool = (family: Family, what: 'save' | 'restore' | '') =>
  `${family === 4 ? 'iptables' : 'ip6tables'}${what ? `-${what}` : ''}`;

/** Reads the filter table of a family; undefined when the tool cannot run (no ip6tables, no table). */
export async function readFilter(runner: IptablesRunner, family: Family): Promise<FilterTable | undefined> {
  const r = await runner(tool(family, 'save'), ['-t', 'filter']);
  return r.code === 0 ? parseFilter(r.stdout) : undefined;
}

/** Reads the filter table of a family; a failure is an error naming the tool. */
export async function mustReadFilter(runner: IptablesRunner, family: Family): Promise<FilterTable> {
  const r = await runner(tool(family, 'save'), ['-t', 'filter']);
  if (r.code !== 0) throw toolError(tool(family, 'save'), r);
  return parseFilter(r.stdout);
}

function toolError(cmd: string, r: { code: number; stderr: string }): CniError {
  return new CniError(
    ErrorCode.Internal,
    `firewall: ${cmd} failed (exit ${r.code}): ${r.stderr.trim()}`,
    'is iptables installed (ip6tables too for IPv6 addresses) and are we root?',
  );
}

/** Creates a chain unless it exists ("already exists" from a racing writer is fine). */
export async function createChain(runner: IptablesRunner, family: Family, chain: string): Promise<void> {
  const r = await runner(tool(family, ''), ['-w', '-t', 'filter', '-N', chain]);
  if (r.code === 0 || /exists/i.test(r.stderr)) return;
  throw toolError(`${tool(family, '')} -N ${chain}`, r);
}

/** Removes an empty, unreferenced chain (with iptables itself, which works when restore does not). */
export async function deleteChain(runner: IptablesRunner, family: Family, chain: string): Promise<void> {
  const r = await runner(tool(family, ''), ['-w', '-t', 'filter', '-X', chain]);
  if (r.code !== 0) throw toolError(`${tool(family, '')} -X ${chain}`, r);
}

/** Applies restore lines to the filter table in one transaction. */
export async function restore(
  runner: IptablesRunner,
  family: Family,
  lines: readonly string[],
): Promise<void> {
  if (lines.length === 0) return;
  const input = ['*filter', ...lines, 'COMMIT', ''].join('\n');
  const r = await runner(tool(family, 'restore'), ['-w', '--noflush'], input);
  if (r.code !== 0) throw toolError(tool(family, 'restore'), r);
}
