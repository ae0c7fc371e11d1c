// The namespaces a conformance run creates: a node netns `ck-conf-<tag>` and container netns
// `ck-conf-<tag>-<n>`, all under /run/netns. Every one is tracked until it is removed, so a run
// removes its own even when it fails, times out or is aborted, and a process exit removes what
// is left (the CLI's SIGINT handler aborts the run first).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { runProc } from './proc.js';

export const NETNS_PREFIX = 'ck-conf-';
export const NETNS_DIR = '/run/netns';

const live = new Set<string>();
let exitHook = false;

/** A fresh random tag for one run's names (8 hex digits). */
export function runTag(): string {
  return randomBytes(4).toString('hex');
}

export function netnsPath(name: string): string {
  return `${NETNS_DIR}/${name}`;
}

/** Creates a named netns (with `lo` down, as the kernel makes it) and tracks it. */
export async function addNetns(name: string): Promise<string> {
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const n of live) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
    });
  }
  live.add(name);
  const r = await runProc('ip', ['netns', 'add', name], { timeoutMs: 10_000 });
  if (r.exitCode !== 0) {
    live.delete(name);
    throw new Error(`ip netns add ${name}: ${r.spawnError ?? r.stderr.trim()}`);
  }
  return netnsPath(name);
}

/** Removes a netns; a netns that is already gone is fine. */
export async function delNetns(name: string): Promise<void> {
  await runProc('ip', ['netns', 'del', name], { timeoutMs: 10_000 });
  live.delete(name);
}

/** Removes every namespace this process created and has not removed yet (for tests' afterAll). */
export async function cleanupConformNamespaces(): Promise<void> {
  await Promise.all([...live].map((n) => delNetns(n)));
}

/** The namespaces this process created and has not removed yet. */
export function liveConformNamespaces(): string[] {
  return [...live];
}

/** A command line run inside `netns` (a path), or as is when netns is undefined. */
export function inNetns(
  netns: string | undefined,
  file: string,
  args: readonly string[],
): [string, string[]] {
  return netns ? ['nsenter', [`--net=${netns}`, '--', file, ...args]] : [file, [...args]];
}
