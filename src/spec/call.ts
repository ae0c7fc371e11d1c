// The vocabulary of one CNI call, shared by every layer: the verbs, the environment a plugin runs
// in, and how a runtime or a delegating plugin builds that environment (CNI_* variables).
import { delimiter } from 'node:path';
import { type CniArgsInput, formatCniArgs } from './args.js';

/** The CNI verbs. */
export type Command = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION';

/** The verbs a plugin's handlers serve (VERSION is answered by the SDK itself). */
export type HandlerCommand = Exclude<Command, 'VERSION'>;

/** A process environment as a plugin sees it (undefined values are unset). */
export type Env = Readonly<Record<string, string | undefined>>;

/** The per-call parameters a runtime passes to a plugin through CNI_* variables. */
export interface CallParams {
  command: Command;
  containerId?: string | undefined;
  netns?: string | undefined;
  ifname?: string | undefined;
  args?: CniArgsInput | undefined;
  /** Plugin directories, joined with the OS list separator into CNI_PATH. */
  path?: readonly string[] | undefined;
}

/** Splits a CNI_PATH value on the OS list separator, dropping empty entries. */
export function splitCniPath(value: string | undefined): string[] {
  if (!value) return [];
  return value.split(delimiter).filter((p) => p !== '');
}

function copyEnv(base: Env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  return env;
}

/**
 * Builds a plugin's environment the way libcni does: the base environment, then all six CNI_*
 * variables (unused ones empty) overriding any inherited value.
 */
export function buildCniEnv(base: Env, params: CallParams): Record<string, string> {
  const env = copyEnv(base);
  env.CNI_COMMAND = params.command;
  env.CNI_CONTAINERID = params.containerId ?? '';
  env.CNI_NETNS = params.netns ?? '';
  env.CNI_IFNAME = params.ifname ?? '';
  env.CNI_ARGS = formatCniArgs(params.args);
  env.CNI_PATH = (params.path ?? []).join(delimiter);
  return env;
}

/**
 * Builds a delegated plugin's environment: the calling plugin's own environment with only
 * CNI_COMMAND replaced, as the spec requires for IPAM and other delegation.
 */
export function buildDelegateEnv(base: Env, command: Command): Record<string, string> {
  const env = copyEnv(base);
  env.CNI_COMMAND = command;
  return env;
}
