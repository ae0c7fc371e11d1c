// An in-memory filter table per family behind the IptablesRunner seam: iptables-save prints it,
// `iptables -N` / `-X` create and remove a chain, iptables-restore --noflush applies -I/-A/-D/-X
// atomically (all or nothing, with the kernel's refusals: deleting a missing rule, removing a chain
// that is referenced or not empty). Unit suites of the chained firewall plugins run against it.
import type { IptablesRunner } from 'cni-kit/netsetup';

const BUILTIN = ['INPUT', 'FORWARD', 'OUTPUT'];

/** One family's filter table: chain → rules (without "-A <chain> "). */
export type Table = Map<string, string[]>;

/** The fake, its tables, the calls it saw, and a hook to make a call fail. */
export interface FakeIptables {
  runner: IptablesRunner;
  tables: Record<4 | 6, Table>;
  calls: Array<{ cmd: string; args: readonly string[]; stdin?: string }>;
  /** Return true to make that call fail with exit 1 (nothing changes). */
  fail: (cmd: string, args: readonly string[], stdin?: string) => boolean;
  /** iptables-save's output for a family. */
  save(family: 4 | 6): string;
  /** Every "-A chain rule" line of a family, in table order. */
  lines(family: 4 | 6): string[];
}

const freshTable = (): Table => new Map(BUILTIN.map((c) => [c, []]));

function apply(t: Table, input: string): string | undefined {
  for (const raw of input.split('\n')) {
    const l = raw.trim();
    if (!l || l === '*filter' || l === 'COMMIT' || l.startsWith('#')) continue;
    let m = /^-I (\S+) 1 (.+)$/.exec(l);
    if (m?.[1] && m[2]) {
      const list = t.get(m[1]);
      if (!list) return `chain ${m[1]} does not exist`;
      list.unshift(m[2]);
      continue;
    }
    m = /^-A (\S+) (.+)$/.exec(l);
    if (m?.[1] && m[2]) {
      const list = t.get(m[1]);
      if (!list) return `chain ${m[1]} does not exist`;
      list.push(m[2]);
      continue;
    }
    m = /^-D (\S+) (.+)$/.exec(l);
    if (m?.[1] && m[2]) {
      const list = t.get(m[1]);
      const i = list?.indexOf(m[2]) ?? -1;
      if (!list || i < 0) return `Bad rule (does a matching rule exist in that chain?): ${l}`;
      list.splice(i, 1);
      continue;
    }
    m = /^-X (\S+)$/.exec(l);
    if (m?.[1]) {
      const name = m[1];
      if ((t.get(name)?.length ?? 1) > 0) return `chain ${name} is missing or not empty`;
      if ([...t.values()].some((rules) => rules.some((r) => r.endsWith(`-j ${name}`))))
        return `chain ${name} is referenced`;
      t.delete(name);
      continue;
    }
    return `unsupported line ${l}`;
  }
  return undefined;
}

/** A fresh fake with empty filter tables in both families. */
export function fakeIptables(): FakeIptables {
  const f: FakeIptables = {
    tables: { 4: freshTable(), 6: freshTable() },
    calls: [],
    fail: () => false,
    save(family) {
      const t = f.tables[family];
      const out = ['*filter'];
      for (const c of t.keys()) out.push(BUILTIN.includes(c) ? `:${c} ACCEPT [0:0]` : `:${c} - [0:0]`);
      for (const [c, rules] of t) for (const r of rules) out.push(`-A ${c} ${r}`);
      out.push('COMMIT', '');
      return out.join('\n');
    },
    lines(family) {
      return [...f.tables[family]].flatMap(([c, rules]) => rules.map((r) => `-A ${c} ${r}`));
    },
    runner: async (cmd, args, stdin) => {
      f.calls.push({ cmd, args, ...(stdin === undefined ? {} : { stdin }) });
      if (f.fail(cmd, args, stdin)) return { code: 1, stdout: '', stderr: `${cmd}: injected failure` };
      const family = cmd.startsWith('ip6') ? 6 : 4;
      const t = f.tables[family];
      if (cmd.endsWith('-save')) return { code: 0, stdout: f.save(family), stderr: '' };
      if (cmd.endsWith('-restore')) {
        const copy: Table = new Map([...t].map(([c, r]) => [c, [...r]]));
        const err = apply(copy, stdin ?? '');
        if (err) return { code: 1, stdout: '', stderr: `${cmd}: line failed: ${err}` };
        f.tables[family] = copy;
        return { code: 0, stdout: '', stderr: '' };
      }
      const x = args.indexOf('-X');
      if (x >= 0) {
        const err = apply(t, `-X ${args[x + 1]}`);
        return err
          ? { code: 1, stdout: '', stderr: `iptables: ${err}` }
          : { code: 0, stdout: '', stderr: '' };
      }
      const n = args.indexOf('-N');
      const chain = n >= 0 ? args[n + 1] : undefined;
      if (chain) {
        if (t.has(chain)) return { code: 1, stdout: '', stderr: 'iptables: Chain already exists.' };
        t.set(chain, []);
        return { code: 0, stdout: '', stderr: '' };
      }
      return { code: 2, stdout: '', stderr: `fake iptables: unsupported ${cmd} ${args.join(' ')}` };
    },
  };
  return f;
}
