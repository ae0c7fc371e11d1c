// IP masquerade for a container address, compatible with the Go reference's rule layout: one nat
// chain per (network, container) named CNI-<hash>, a POSTROUTING jump from the container address,
// and inside the chain ACCEPT for the local subnet and MASQUERADE for everything but multicast.
// Changes go through one `iptables-restore --noflush` per family (atomic), after one `iptables-save`
// read, so a repeated ADD never duplicates the jump and DEL finds the jumps without knowing the IPs
// (the Go plugin leaks them when the netns is already gone).
import { spawn } from 'node:child_process';
import { ipFamily } from '../spec/addr.js';
import { CniError, ErrorCode } from '../spec/errors.js';

// node:crypto costs ~2 ms to load: only calls that hash or draw a random name pay for it.
const crypto = () => process.getBuiltinModule('node:crypto');

/** Runs one iptables tool with optional stdin; the seam tests replace to avoid touching the host. */
export type IptablesRunner = (
  cmd: string,
  args: readonly string[],
  stdin?: string,
) => Promise<{ code: number; stdout: string; stderr: string }>;

/** The real runner: spawns the binary found on PATH. */
export const spawnIptables: IptablesRunner = (cmd, args, stdin) =>
  new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout?.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    p.stderr?.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    p.on('error', (e) => resolve({ code: 127, stdout, stderr: `${stderr}${e.message}` }));
    p.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    if (p.stdin) {
      // A tool that exits before reading its input must not crash the plugin with EPIPE.
      p.stdin.on('error', () => {});
      p.stdin.end(stdin);
    }
  });

/** The per-container chain name the Go plugins use: "CNI-" + 24 hex digits of sha512(name+id). */
export function masqChainName(network: string, containerId: string): string {
  return `CNI-${crypto()
    .createHash('sha512')
    .update(network + containerId)
    .digest('hex')
    .slice(0, 24)}`;
}

/** The rule comment the Go plugins use, so either implementation recognises the other's rules. */
export function masqComment(network: string, containerId: string): string {
  return `name: "${network}" id: "${containerId}"`;
}

const quote = (s: string): string => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

const tools = (family: 4 | 6) =>
  family === 4
    ? { save: 'iptables-save', restore: 'iptables-restore', multicast: '224.0.0.0/4' }
    : { save: 'ip6tables-save', restore: 'ip6tables-restore', multicast: 'ff00::/8' };

async function run(runner: IptablesRunner, cmd: string, args: string[], stdin?: string): Promise<string> {
  const r = await runner(cmd, args, stdin);
  if (r.code !== 0) {
    throw new CniError(
      ErrorCode.Internal,
      `ipMasq: ${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`,
      'is iptables installed and are we root?',
    );
  }
  return r.stdout;
}

/** POSTROUTING rules (as iptables-save prints them, minus "-A ") that jump to `chain`. */
function jumpsTo(saved: string, chain: string): string[] {
  return saved
    .split('\n')
    .filter((l) => l.startsWith('-A POSTROUTING ') && new RegExp(`-j ${chain}(\\s|$)`).test(l))
    .map((l) => l.slice(3));
}

/** Options shared by setup and teardown. */
export interface IpMasqOptions {
  runner?: IptablesRunner | undefined;
}

/**
 * Masquerades traffic from `address` (CIDR with host bits, e.g. "10.1.0.5/24") leaving its subnet.
 * Idempotent: the chain is rebuilt and the POSTROUTING jump added only when missing.
 */
export async function setupIpMasq(
  address: string,
  network: string,
  containerId: string,
  opts: IpMasqOptions = {},
): Promise<void> {
  const runner = opts.runner ?? spawnIptables;
  const family = ipFamily(address) === 6 ? 6 : 4;
  const t = tools(family);
  const chain = masqChainName(network, containerId);
  const comment = `-m comment --comment ${quote(masqComment(network, containerId))}`;
  const ip = address.split('/')[0] ?? address;
  const saved = await run(runner, t.save, ['-t', 'nat']);
  const jump = `POSTROUTING -s ${ip}/${family === 4 ? 32 : 128} ${comment} -j ${chain}`;
  const hasJump = jumpsTo(saved, chain).some((l) => l.includes(`-s ${ip}/`));
  const lines = [
    '*nat',
    // Declaring the chain in a --noflush restore creates it or empties it: a rebuilt, never doubled chain.
    `:${chain} - [0:0]`,
    `-A ${chain} -d ${address} ${comment} -j ACCEPT`,
    `-A ${chain} ! -d ${t.multicast} ${comment} -j MASQUERADE`,
    ...(hasJump ? [] : [`-A ${jump}`]),
    'COMMIT',
    '',
  ];
  await run(runner, t.restore, ['-w', '--noflush'], lines.join('\n'));
}

/** Removes the chain of (network, containerId) and every POSTROUTING jump to it, in both families. */
export async function teardownIpMasq(
  network: string,
  containerId: string,
  opts: IpMasqOptions & { families?: Array<4 | 6> } = {},
): Promise<void> {
  const runner = opts.runner ?? spawnIptables;
  const chain = masqChainName(network, containerId);
  for (const family of opts.families ?? [4, 6]) {
    const t = tools(family);
    const r = await runner(t.save, ['-t', 'nat']);
    // No ip6tables (or no nat table for v6) means nothing of ours can be there.
    if (r.code !== 0) continue;
    const jumps = jumpsTo(r.stdout, chain);
    const exists = r.stdout.split('\n').some((l) => l.startsWith(`:${chain} `));
    if (!exists && jumps.length === 0) continue;
    const lines = ['*nat', ...jumps.map((j) => `-D ${j}`)];
    if (exists) lines.push(`-F ${chain}`, `-X ${chain}`);
    lines.push('COMMIT', '');
    await run(runner, t.restore, ['-w', '--noflush'], lines.join('\n'));
  }
}
