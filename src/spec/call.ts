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

/**
 * The variable cni-kit sets on every plugin it execs: the nested calls that led to it, outermost
 * first, as "type VERB" joined by " > " (e.g. "flannel ADD > bridge ADD"). It is inherited through
 * plugins of other SDKs, which pass their whole environment on, so a delegation loop that runs
 * through a Go plugin is still seen.
 */
export const DELEGATION_CHAIN_ENV = 'CNI_KIT_DELEGATION_CHAIN';

/** Overrides the delegation depth limit (a positive integer). */
export const MAX_DELEGATION_DEPTH_ENV = 'CNI_KIT_MAX_DELEGATION_DEPTH';

/** How many nested plugin calls a chain may hold: meta plugins nest three or four deep at most. */
export const DEFAULT_MAX_DELEGATION_DEPTH = 8;

const CHAIN_SEP = ' > ';

/** The delegation chain recorded in `env` (empty when the caller was not a cni-kit plugin or runtime). */
export function delegationChain(env: Env): string[] {
  const v = env[DELEGATION_CHAIN_ENV];
  return v ? v.split(CHAIN_SEP).filter((s) => s !== '') : [];
}

/** A copy of `env` whose delegation chain ends with `type command`. */
export function withDelegationStep(
  env: Readonly<Record<string, string>>,
  type: string,
  command: Command,
): Record<string, string> {
  return { ...env, [DELEGATION_CHAIN_ENV]: [...delegationChain(env), `${type} ${command}`].join(CHAIN_SEP) };
}

/** The delegation depth limit in force for `env`. */
export function maxDelegationDepth(env: Env): number {
  const v = Number(env[MAX_DELEGATION_DEPTH_ENV]);
  return Number.isInteger(v) && v > 0 ? v : DEFAULT_MAX_DELEGATION_DEPTH;
}

/** Formats a delegation chain for a message. */
export function formatDelegationChain(chain: readonly string[]): string {
  return chain.join(CHAIN_SEP);
}

/**
 * Why a plugin call must not run, or undefined: the same plugin type twice in its chain of nested
 * calls (a delegation loop: no plugin legitimately runs inside itself, directly or through others),
 * or more nested calls than the limit. Only calls exec'd by cni-kit are in the chain, so a loop
 * is seen at the latest on its second round.
 */
export function delegationProblem(env: Env): string | undefined {
  const chain = delegationChain(env);
  const typeOf = (step: string) => {
    const i = step.lastIndexOf(' ');
    return i < 0 ? step : step.slice(0, i);
  };
  const shown = formatDelegationChain(chain);
  const seen = new Set<string>();
  for (const step of chain) {
    const type = typeOf(step);
    if (seen.has(type)) {
      return `delegation loop: plugin "${type}" runs inside itself (${shown}); a config hands the call back to a plugin that is already running it: check the "type", "ipam.type" and "delegate" fields of the configs on this path`;
    }
    seen.add(type);
  }
  const max = maxDelegationDepth(env);
  if (chain.length > max) {
    return `delegation too deep: ${chain.length} nested plugin calls, the limit is ${max} (${shown}); fix the configs that delegate in a circle, or raise the limit with ${MAX_DELEGATION_DEPTH_ENV}`;
  }
  return undefined;
}
