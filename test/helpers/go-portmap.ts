// The Go reference portmap (run by the chaining and runtime suites) creates shared NAT chains on
// its first ADD (CNI-HOSTPORT-DNAT, -MASQ, -SETMARK and the jumps to them from the built-in
// chains) and never removes them: its DEL removes only the container's own rules. The test files
// cannot tell which of them made the chains (they run side by side), so the end of the run does:
// chains that were not there before the run and hold no container's DNAT rule any more go.
// Chains that were there before (a runtime on this machine uses portmap) are never touched.
import { spawnSync } from 'node:child_process';
import type { Snapshot } from './leak-check.js';

const CHAINS = ['CNI-HOSTPORT-DNAT', 'CNI-HOSTPORT-MASQ', 'CNI-HOSTPORT-SETMARK'];

/** Removes the run's unused portmap chains (see the file comment); returns what it removed. */
export function removeNewPortmapChains(before: Snapshot): string[] {
  const removed: string[] = [];
  for (const [family, tool] of [
    ['ip4', 'iptables'],
    ['ip6', 'ip6tables'],
  ] as const) {
    if (before.iptables.includes(`${family} nat :CNI-HOSTPORT-DNAT -`)) continue;
    const r = spawnSync(tool, ['-t', 'nat', '-S'], { encoding: 'utf8' });
    if (r.status !== 0) continue;
    const rules = r.stdout.split('\n');
    if (!rules.includes('-N CNI-HOSTPORT-DNAT')) continue;
    if (rules.some((l) => l.startsWith('-A CNI-HOSTPORT-DNAT '))) continue; // a container still uses it
    for (const rule of rules) {
      if (!/^-A (PREROUTING|INPUT|OUTPUT|POSTROUTING) .*-j CNI-HOSTPORT-/.test(rule)) continue;
      // -S prints rules with shell quoting (comments), so the shell splits them back.
      spawnSync('sh', ['-c', `${tool} -t nat ${rule.replace(/^-A /, '-D ')}`]);
      removed.push(`${family} nat ${rule}`);
    }
    for (const chain of CHAINS.filter((c) => rules.includes(`-N ${c}`))) {
      spawnSync(tool, ['-t', 'nat', '-F', chain]);
      spawnSync(tool, ['-t', 'nat', '-X', chain]);
      removed.push(`${family} nat chain ${chain}`);
    }
  }
  return removed;
}
