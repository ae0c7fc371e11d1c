import { delimiter } from 'node:path';

/** The CNI verbs a plugin can be called with. */
export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION';

/** A CNI_ARGS value: raw `K=V;K=V` text or key/value pairs. */
export type CniArgsInput = string | ReadonlyArray<readonly [string, string]>;

/** The per-call parameters a runtime passes to a plugin through CNI_* variables. */
export interface CniCallParams {
  command: CniCommand;
  containerId?: string;
  netns?: string;
  ifname?: string;
  args?: CniArgsInput;
  /** Plugin directories, joined with the OS list separator into CNI_PATH. */
  path?: readonly string[];
}

/** An environment map as accepted by child_process (undefined values are dropped). */
export type EnvMap = Readonly<Record<string, string | undefined>>;

/** Joins CNI_ARGS pairs as `K=V;K=V` (no escaping, like libcni). */
export function stringifyCniArgs(args: CniArgsInput | undefined): string {
  if (args === undefined) return '';
  if (typeof args === 'string') return args;
  return args.map(([k, v]) => `${k}=${v}`).join(';');
}

/**
 * Builds a plugin's environment the way libcni does: the base environment, then all six CNI_*
 * variables (unused ones empty) overriding any inherited value.
 */
export function buildCniEnv(base: EnvMap, params: CniCallParams): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  env.CNI_COMMAND = params.command;
  env.CNI_CONTAINERID = params.containerId ?? '';
  env.CNI_NETNS = params.netns ?? '';
  env.CNI_IFNAME = params.ifname ?? '';
  env.CNI_ARGS = stringifyCniArgs(params.args);
  env.CNI_PATH = (params.path ?? []).join(delimiter);
  return env;
}

/**
 * Builds a delegated plugin's environment: a plugin's own environment with only CNI_COMMAND
 * replaced, as the spec requires for IPAM and other delegation.
 */
export function buildDelegateEnv(base: EnvMap, command: CniCommand): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  env.CNI_COMMAND = command;
  return env;
}
