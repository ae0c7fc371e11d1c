// Runs a built plugin binary as a real process, the way a runtime does.
import { type ChildProcess, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type PluginSpec, runPlugin } from 'cni-kit';

export const BIN_DIR = fileURLToPath(new URL('../../dist/bin/', import.meta.url));

export interface Exec {
  stdout: string;
  stderr: string;
  status: number | null;
  json: unknown;
}

/** Execs `dist/bin/<type>` (or an absolute path) with exactly `env` and `stdin`. */
export function execPlugin(type: string, env: Record<string, string>, stdin = ''): Exec {
  const bin = type.startsWith('/') ? type : `${BIN_DIR}${type}`;
  return spawnPlugin(bin, [], env, stdin);
}

/**
 * Execs the binary at `bin` inside the named netns `node` (under `nsenter --net`), with exactly
 * `env` and `stdin`, as a runtime running there would; killed after `timeout` ms when given.
 */
export function execPluginIn(
  node: string,
  bin: string,
  env: Record<string, string>,
  stdin: string,
  opts: { timeout?: number } = {},
): Exec {
  return spawnPlugin('nsenter', [`--net=/var/run/netns/${node}`, bin], env, stdin, opts.timeout);
}

function spawnPlugin(
  cmd: string,
  args: string[],
  env: Record<string, string>,
  stdin: string,
  timeout?: number,
): Exec {
  const r = spawnSync(cmd, args, {
    env: { PATH: process.env.PATH ?? '', ...env },
    input: stdin,
    encoding: 'utf8',
    ...(timeout === undefined ? {} : { timeout }),
  });
  let json: unknown;
  try {
    json = r.stdout ? JSON.parse(r.stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { stdout: r.stdout, stderr: r.stderr, status: r.status, json };
}

/**
 * One call of `plugin` in this process through runPlugin, as a plugin author's test makes it:
 * container ctr1 and a CNI_PATH with nothing to exec unless `env` says otherwise; `json` is the
 * parsed stdout when there is one.
 */
export async function callInProcess<C>(
  plugin: PluginSpec<C>,
  cmd: string,
  conf: object,
  env: { CNI_NETNS: string; CNI_IFNAME: string } & Record<string, string>,
) {
  const full = { CNI_COMMAND: cmd, CNI_CONTAINERID: 'ctr1', CNI_PATH: '/nonexistent', ...env };
  const out = await runPlugin(plugin, { env: full, stdin: JSON.stringify(conf) });
  return { ...out, json: out.stdout ? JSON.parse(out.stdout) : undefined };
}

/** The standard env of a call. */
export function cniEnv(command: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: 'ctr1',
    CNI_NETNS: '/var/run/netns/none',
    CNI_IFNAME: 'eth0',
    CNI_PATH: BIN_DIR,
    ...extra,
  };
}

/**
 * Resolves once `child` has written `marker` to its stdout (chunks joined, so a marker split across
 * reads still counts); rejects naming `what` when it exits first or `ms` pass.
 */
export function untilStdout(child: ChildProcess, marker: string, what: string, ms = 10_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let seen = '';
    const t = setTimeout(() => reject(new Error(`${what}: no "${marker}" within ${ms} ms`)), ms);
    child.stdout?.on('data', (b: Buffer) => {
      seen += b.toString();
      if (seen.includes(marker)) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${what}: exited (${code}) before "${marker}"`));
    });
  });
}
