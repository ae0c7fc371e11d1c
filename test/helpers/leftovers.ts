// What the SIGKILL suites look at after DEL: a run that was cut short at any point, then cleaned up
// by DEL, must leave the container, the node, iptables and host-local's store as they were.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';

/** Link names of a named netns, sorted. */
export const links = (ns: string): string[] =>
  (
    JSON.parse(execFileSync('ip', ['-n', ns, '-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{
      ifname: string;
    }>
  )
    .map((l) => l.ifname)
    .sort();

/** The node's NAT rules and chains that the plugins name CNI-*. */
export const natChains = (node: string): string[] =>
  spawnSync('nsenter', [`--net=/run/netns/${node}`, 'iptables-save', '-t', 'nat'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((l) => /CNI-/.test(l));

/** What a case may leave: the node's links before it, and the links left by design (a bridge). */
export interface Baseline {
  node: string;
  ctr: string;
  nodeLinks: string[];
  byDesign: readonly string[];
  /** host-local's data dir and the network name (its folder in there). */
  dataDir: string;
  network: string;
}

/** Asserts that nothing of the case is left; `at` names the run in the messages. */
export function expectNothingLeft(b: Baseline, at: string): void {
  expect(links(b.ctr), `${at}: container`).toEqual(['lo']);
  expect(
    links(b.node).filter((l) => !b.byDesign.includes(l)),
    `${at}: node`,
  ).toEqual(b.nodeLinks);
  expect(natChains(b.node), `${at}: iptables`).toEqual([]);
  const pool = join(b.dataDir, b.network);
  const held = existsSync(pool) ? readdirSync(pool).filter((f) => /^\d/.test(f)) : [];
  expect(held, `${at}: IPAM`).toEqual([]);
}
