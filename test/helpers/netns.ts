// Network namespaces and plugin dirs for tests that chain our plugins with the Go reference ones
// (Debian's, in /usr/lib/cni) under CniRuntime. `TestNetnses` makes named namespaces fresh and
// deletes them all at the end; `useGoChain` gives a test file a scratch dir, its namespaces, plugin
// dirs mixing ours and Go's, and runtimes over them, all removed after the file's tests.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CniRuntime } from 'cni-kit/runtime';
import { afterAll, beforeAll, type TestContext } from 'vitest';
import { pluginDir as oursDir } from './mode.js';

/** Where Debian installs the Go reference plugins. */
export const GO_PLUGINS = '/usr/lib/cni';

/** Named network namespaces of one test file. */
export class TestNetnses {
  private readonly names: string[] = [];

  /** Creates `name` (deleting a stale one first), to be deleted by `removeAll()`; returns the name. */
  add(name: string): string {
    spawnSync('ip', ['netns', 'del', name]);
    execFileSync('ip', ['netns', 'add', name], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.names.push(name);
    return name;
  }

  /** Deletes every namespace `add` made (those already gone are fine). */
  removeAll(): void {
    for (const n of this.names) spawnSync('ip', ['netns', 'del', n]);
  }
}

/** Skips the test unless it runs as root and each named Go reference plugin is installed. */
export function needGo(ctx: TestContext, ...plugins: string[]): void {
  if (process.getuid?.() !== 0) ctx.skip('needs root for network namespaces');
  for (const p of plugins)
    if (!existsSync(join(GO_PLUGINS, p))) ctx.skip(`Go reference plugin ${p} not installed in ${GO_PLUGINS}`);
}

export interface GoChain {
  /** The file's scratch dir (made before its tests, removed after them). */
  work(): string;
  /** A fresh netns named `name`, deleted after the file's tests; returns the name. */
  netns(name: string): string;
  /**
   * A plugin dir `<work>/<name>` where each type is ours or Go's. With `node`, each type is a
   * script that enters that node netns and execs the plugin there (so host-side links land in it);
   * without, a symlink.
   */
  pluginDir(name: string, links: Record<string, 'ours' | 'go'>, node?: string): string;
  /** A CniRuntime over one plugin dir, its cache in the scratch dir. */
  runtime(dir: string): CniRuntime;
}

/** Registers the file's set-up and clean-up hooks; call at the top level of a test file. */
export function useGoChain(tag: string): GoChain {
  const netnses = new TestNetnses();
  let work = '';
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), `${tag}-`));
  });
  afterAll(() => {
    netnses.removeAll();
    if (work) rmSync(work, { recursive: true, force: true });
  });
  return {
    work: () => work,
    netns: (name) => netnses.add(name),
    pluginDir(name, links, node) {
      const dir = join(work, name);
      mkdirSync(dir, { recursive: true });
      for (const [type, who] of Object.entries(links)) {
        const real = join(who === 'ours' ? oursDir(node) : GO_PLUGINS, type);
        const file = join(dir, type);
        if (node === undefined) {
          symlinkSync(real, file);
          continue;
        }
        writeFileSync(file, `#!/bin/sh\nexec nsenter --net=/var/run/netns/${node} ${real} "$@"\n`);
        chmodSync(file, 0o755);
      }
      return dir;
    },
    runtime: (dir) =>
      new CniRuntime({
        pluginDirs: [dir],
        cacheDir: join(work, 'cache'),
        timeoutMs: 20_000,
        stderr: null,
      }),
  };
}
