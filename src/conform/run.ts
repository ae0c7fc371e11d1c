// runConformance: sets up the node netns, asks VERSION, picks the versions, runs the checks in a
// fixed order and always tears down what it created (attachments, container and node netns).
import { accessSync, constants, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ALL_VERSIONS, compareVersions, parseResult, type Result, toCurrentResult } from '../spec/index.js';
import { AbortedError, fail, RunContext } from './context.js';
import { concurrency, delNetnsGone, delWithoutAdd, lifecycle, statusCheck } from './flows.js';
import { addNetns, delNetns, inNetns, NETNS_PREFIX, runTag } from './netns.js';
import { runProc } from './proc.js';
import { errorChecks, versionCheck, versionConfigCheck } from './protocol.js';
import type { CheckResult, ConformOptions, ConformReport } from './types.js';

/** Every check id, in report order. */
export const CHECKS = [
  'node-setup',
  'version',
  'error:unknown-command',
  'error:missing-containerid',
  'error:missing-ifname',
  'error:missing-netns',
  'error:bad-json',
  'error:unsupported-version',
  'version:config',
  'add',
  'add-state',
  'check',
  'del',
  'leftovers',
  'del-twice',
  'del-without-add',
  'del-netns-gone',
  'leftovers:netns-gone',
  'concurrent-add',
  'concurrent-addresses',
  'gc',
  'concurrent-del',
  'leftovers:concurrent',
  'status',
  'kit',
] as const;

/** A mistake in the options (not a plugin failure): the CLI exits 2 on it. */
export class ConformUsageError extends Error {}

const DEFAULT_DIRS = ['/usr/lib/cni', '/opt/cni/bin'];

function dataDirsOf(config: Record<string, unknown>, extra: readonly string[]): string[] {
  const dirs = [...extra];
  if (typeof config.dataDir === 'string' && config.dataDir) dirs.push(config.dataDir);
  const ipam = config.ipam;
  if (typeof ipam === 'object' && ipam !== null && !Array.isArray(ipam)) {
    const i = ipam as Record<string, unknown>;
    if (typeof i.dataDir === 'string' && i.dataDir) dirs.push(i.dataDir);
    else if (i.type === 'host-local' && typeof config.name === 'string') {
      dirs.push(join('/var/lib/cni/networks', config.name));
    }
  }
  return [...new Set(dirs.map((d) => resolve(d)))];
}

interface VersionPlan {
  tried: string[];
  notTried: Array<{ version: string; reason: string }>;
}

function planVersions(
  supported: string[] | undefined,
  wanted: readonly string[] | undefined,
  config: Record<string, unknown>,
  chained: boolean,
): VersionPlan {
  const known = ALL_VERSIONS as readonly string[];
  const notTried: VersionPlan['notTried'] = [];
  let pool: string[];
  if (supported) {
    pool = known.filter((v) => supported.includes(v));
    for (const s of supported) {
      if (!known.includes(s)) notTried.push({ version: s, reason: 'not a CNI spec version' });
    }
  } else {
    const fallback = wanted ?? (typeof config.cniVersion === 'string' ? [config.cniVersion] : []);
    pool = known.filter((v) => fallback.includes(v));
  }
  const tried: string[] = [];
  for (const v of pool) {
    if (wanted && !wanted.includes(v)) notTried.push({ version: v, reason: 'not in --versions' });
    else if (chained && compareVersions(v, '0.3.0') < 0) {
      notTried.push({ version: v, reason: 'a config with prevResult needs 0.3.0 or later' });
    } else tried.push(v);
  }
  for (const w of wanted ?? []) {
    if (pool.includes(w)) continue;
    const reason = !known.includes(w)
      ? 'not a CNI spec version'
      : supported
        ? 'the plugin does not list it'
        : 'VERSION failed';
    notTried.push({ version: w, reason });
  }
  return { tried, notTried };
}

function loadPrevResult(fixture: Record<string, unknown> | undefined): Result | undefined {
  if (!fixture) return undefined;
  try {
    return toCurrentResult(parseResult(fixture, undefined, { what: 'prevResult fixture' }));
  } catch (e) {
    throw new ConformUsageError(`--prev-result: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function sortChecks(checks: CheckResult[]): CheckResult[] {
  const order = (c: CheckResult) => CHECKS.indexOf(c.check as (typeof CHECKS)[number]);
  return [...checks].sort((a, b) => {
    if (a.version !== b.version) {
      if (a.version === null) return -1;
      if (b.version === null) return 1;
      return compareVersions(a.version, b.version);
    }
    return order(a) - order(b);
  });
}

/**
 * Runs one flow; a failure of the kit's own work in it (a netns it could not create, a scaffold
 * that would not build) is reported as `kit` for that version and the next flow still runs.
 */
async function flow(run: RunContext, name: string, version: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof AbortedError || run.s.signal?.aborted) throw e;
    run.record('kit', version, 'fail', `${name}: ${e instanceof Error ? e.message : String(e)}`, Date.now());
  }
}

/** Holds one plugin binary to the spec. Never throws for plugin failures: they are in the report. */
export async function runConformance(options: ConformOptions): Promise<ConformReport> {
  const started = Date.now();
  const plugin = resolve(options.plugin);
  try {
    accessSync(plugin, constants.X_OK);
  } catch {
    throw new ConformUsageError(`plugin ${plugin}: not an executable file`);
  }
  const config = options.config;
  if (Array.isArray(config.plugins)) {
    throw new ConformUsageError('the config is a conflist; pass the config of one plugin');
  }
  if (typeof config.type !== 'string' || typeof config.name !== 'string') {
    throw new ConformUsageError('the config needs "name" and "type" strings');
  }
  // A config captured from a chain may carry its prevResult: it is the fixture unless one is given.
  const prevFixture = loadPrevResult(
    options.prevResult ??
      (typeof config.prevResult === 'object' && config.prevResult !== null
        ? (config.prevResult as Record<string, unknown>)
        : undefined),
  );
  const concurrencyN = options.concurrency ?? 4;
  if (!Number.isInteger(concurrencyN) || concurrencyN < 1) {
    throw new ConformUsageError('concurrency must be a positive integer');
  }
  const tag = runTag();
  const nodeName = options.nodeNetns === false ? undefined : `${NETNS_PREFIX}${tag}`;
  const cniPath = options.cniPath
    ? [...options.cniPath]
    : [...new Set([dirname(plugin), ...DEFAULT_DIRS.filter((d) => existsSync(d))])];
  const run = new RunContext({
    plugin,
    config,
    ifname: options.ifname ?? 'eth0',
    concurrency: concurrencyN,
    dataDirs: dataDirsOf(config, options.dataDirs ?? []),
    cniPath,
    prevFixture,
    nodeNetns: nodeName ? `/run/netns/${nodeName}` : undefined,
    timeoutMs: options.timeoutMs ?? 20_000,
    signal: options.signal,
    tag,
    log: options.log,
    containerSetup: options.containerSetup,
  });
  let plan: VersionPlan = { tried: [], notTried: [] };
  let aborted = false;
  try {
    if (nodeName) {
      await addNetns(nodeName);
      const [f, a] = inNetns(run.s.nodeNetns, 'ip', ['link', 'set', 'lo', 'up']);
      await runProc(f, a, { timeoutMs: 10_000 });
    }
    let setupOk = true;
    if (options.nodeSetup) {
      setupOk = await run.step('node-setup', null, async () => {
        const [f, a] = inNetns(run.s.nodeNetns, 'sh', ['-c', options.nodeSetup!]);
        const r = await runProc(f, a, { timeoutMs: run.s.timeoutMs, signal: options.signal });
        if (r.exitCode !== 0) throw fail(`--node-setup failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
        return 'ran';
      });
    }
    if (setupOk) {
      const supported = await versionCheck(run);
      plan = planVersions(supported, options.versions, config, prevFixture !== undefined);
      await Promise.all(plan.tried.map((v) => versionConfigCheck(run, v)));
      const errVersion =
        plan.tried.at(-1) ?? (typeof config.cniVersion === 'string' ? config.cniVersion : '1.0.0');
      await errorChecks(run, errVersion);
      for (const v of plan.tried) {
        let checkOk = false;
        await flow(run, 'lifecycle', v, async () => {
          checkOk = await lifecycle(run, v);
        });
        await flow(run, 'del-without-add', v, () => delWithoutAdd(run, v));
        await flow(run, 'del-netns-gone', v, () => delNetnsGone(run, v));
        await flow(run, 'concurrency', v, () => concurrency(run, v, checkOk));
        if (v === '1.1.0') await flow(run, 'status', v, () => statusCheck(run));
      }
      if (!plan.tried.includes('1.1.0')) {
        const why = plan.notTried.find((n) => n.version === '1.1.0')?.reason ?? 'the plugin does not list it';
        run.skip('gc', null, `GC needs 1.1.0, not tried: ${why}`);
        run.skip('status', null, `STATUS needs 1.1.0, not tried: ${why}`);
      }
    }
  } catch (e) {
    if (e instanceof AbortedError || options.signal?.aborted) aborted = true;
    else
      run.record('kit', null, 'fail', `kit error: ${e instanceof Error ? e.message : String(e)}`, Date.now());
  } finally {
    await run.cleanup();
    if (nodeName) await delNetns(nodeName);
  }
  const checks = sortChecks(run.checks);
  const count = (s: string) => checks.filter((c) => c.status === s).length;
  const failed = count('fail');
  return {
    plugin,
    network: String(config.name),
    type: String(config.type),
    netns: `${NETNS_PREFIX}${tag}`,
    versions: plan.tried,
    versionsNotTried: plan.notTried,
    checks,
    passed: count('pass'),
    failed,
    skipped: count('skip'),
    ok: failed === 0 && !aborted,
    ...(aborted ? { aborted: true } : {}),
    durationMs: Date.now() - started,
  };
}
