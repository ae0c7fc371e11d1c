// One fuzz case end to end (ADD, CHECK, DEL, DEL again; DEL without ADD; DEL after the netns is
// gone; SIGKILL mid-ADD then DEL), judged by the invariants of the issue's Deliver section, and
// the fast-check driver the suites share: a time budget per plugin, every failing case collected
// with its seed and a replayable recipe (CNI_KIT_FUZZ_CASE='<recipe JSON>').
//
// Knobs (all optional):
//   CNI_KIT_FUZZ_RUNS=N        run N cases per plugin and suite instead of the time budget (bench)
//   CNI_KIT_FUZZ_SEED=S        fast-check seed (printed with every failure); `random` for a fresh
//                              draw (the default of CNI_KIT_FUZZ_RUNS; npm test uses fixed seeds)
//   CNI_KIT_FUZZ_CASE=<json>   replay exactly this recipe, once
//   CNI_KIT_FUZZ_PLUGINS=a,b   only these plugins
//   CNI_KIT_FUZZ_VERSIONS=a,b  only these cniVersions (none: no cniVersion)
//   CNI_KIT_FUZZ_BUDGET_MS=N   per-plugin time budget of the default run
//   CNI_KIT_FUZZ_MUTATED=0.8   share of cases whose config is mutated
//   CNI_KIT_FUZZ_LOG=<file>    also append every failing case to this file (JSON lines)
//   CNI_KIT_FUZZ_SELF_IPAM=1   also generate main plugins as IPAM types (issue 11 F1 fixed)
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { TestContext } from 'vitest';
import { runFence } from './bounded-runs.js';
import {
  FUZZ_PLUGINS,
  type FuzzCall,
  type FuzzPlugin,
  type FuzzWorld,
  KNOWN_VERSIONS,
  type WorldSnapshot,
} from './fuzz.js';
import {
  configValid,
  containerIdFor,
  envFor,
  envWellFormed,
  type Flow,
  type FuzzCase,
  IFNAMES,
  materializeConfig,
} from './fuzz-arbs.js';
import {
  errorCode,
  leftovers,
  machineStateNaming,
  protocolProblems,
  said,
  strayNetns,
} from './fuzz-judge.js';

/** One failing case: which invariants broke, and the recipe that replays it. */
export interface FuzzFailure {
  plugin: string;
  seed: number;
  run: number;
  problems: string[];
  /** Absent on a failure of the suite as a whole (too few cases), which no recipe replays. */
  recipe?: FuzzCase;
  stdin: string;
  env: Record<string, string>;
}

/** What a suite measured. */
export interface FuzzStats {
  cases: number;
  runs: number;
  adds: number;
  addsOk: number;
  maxRunMs: number;
  ms: number;
}

/** The version a config's results must carry: no cniVersion (or "") is 0.1.0, as Go reads it. */
const versionOf = (config: unknown): string | undefined => {
  if (config === null || typeof config !== 'object' || Array.isArray(config)) return undefined;
  const v = (config as { cniVersion?: unknown }).cniVersion;
  return v === undefined || v === '' ? '0.1.0' : typeof v === 'string' ? v : undefined;
};
const atLeast040 = (v: string | undefined) => v !== undefined && ['0.4.0', '1.0.0', '1.1.0'].includes(v);

/** The F-items of issue 11 a problem text most likely matches, for the report. */
export function classify(f: Pick<FuzzFailure, 'plugin' | 'problems' | 'recipe'>): string[] {
  const t = f.problems.join(' | ');
  const tags = new Set<string>();
  if (/incompatible CNI version|supports \[|refuses cniVersion/i.test(t)) tags.add('versions');
  if (f.recipe?.env.containerId === 'long' && /ENAMETOOLONG|too long|left behind/.test(t)) tags.add('F6');
  if (/\bcni[0-9a-f]{8}\b/.test(t)) tags.add('F8');
  if (/\.tmp/.test(t)) tags.add('F10');
  if (f.plugin === 'host-device' && /left behind|removed|changed/.test(t)) tags.add('F2');
  if (f.plugin === 'tuning') tags.add('F3/F4/F5?');
  if (/internals|code 999/.test(t)) tags.add('F17');
  if (f.recipe?.env.ifname === 'lo' && /lo removed|link lo/.test(t)) tags.add('F15');
  if (f.recipe?.env.args === 'ip' || f.recipe?.env.args === 'ip-ignore') tags.add('F7?');
  return [...tags];
}

interface Judge {
  problems: string[];
  stats: FuzzStats;
  /** Every process of the case's runs. */
  pids: Set<number>;
}

function judgeRun(j: Judge, call: FuzzCall, label: string, expectVersion?: string): void {
  j.stats.runs++;
  for (const p of call.pids) j.pids.add(p);
  j.stats.maxRunMs = Math.max(j.stats.maxRunMs, call.durationMs);
  if (call.killed) return;
  for (const p of protocolProblems(call, expectVersion)) j.problems.push(`${label}: ${p}`);
}

/**
 * Runs one case in the world. `index` is the plugin's subnet index. Returns the problems (empty:
 * every invariant held) and the stdin/env used.
 */
export async function runCase(
  world: FuzzWorld,
  recipe: FuzzCase,
  index: number,
  stats: FuzzStats,
): Promise<{ problems: string[]; stdin: string; env: Record<string, string> }> {
  const j: Judge = { problems: [], stats, pids: new Set() };
  const netnsBefore = new Set(readdirSync('/run/netns'));
  const caseDir = world.caseDir();
  const dataDir = join(caseDir, 'data');
  const n = stats.cases++;
  const containerId = containerIdFor(recipe.env, world.tag, n);
  const c = world.addContainer();
  const hostDevice = `fzhd${n % 1000}`;
  const notNetns = join(caseDir, 'not-a-netns');
  writeFileSync(notNetns, 'x');
  const gone = `/run/netns/${world.node}-gone${n}`;
  const ifname = IFNAMES[recipe.env.ifname];
  const plugin = recipe.plugin;
  // What a runtime would provide: the device host-device takes, flannel's subnet.env, and for a
  // chained tuning an interface in the container and its prevResult.
  if (plugin === 'host-device') world.ipn('tuntap', 'add', 'dev', hostDevice, 'mode', 'tap');
  if (plugin === 'flannel') {
    writeFileSync(
      join(caseDir, 'subnet.env'),
      `FLANNEL_NETWORK=10.${60 + index}.0.0/16\nFLANNEL_SUBNET=10.${60 + index}.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n`,
    );
  }
  const ctx = {
    dataDir,
    caseDir,
    index,
    hostDevice,
    netnsPath: c.path,
    containerId: containerId ?? '',
    tag: world.tag,
    etcdUrl: world.etcdUrl,
    etcdPrefix: `/fz/${world.tag}/case${n}/`,
    binDir: world.binDir,
  };
  const { config, stdin: baseStdin } = materializeConfig(recipe, ctx);
  let stdin = baseStdin;
  const version = versionOf(config);
  if (plugin === 'tuning' && ifname && /^[a-z0-9]{1,15}$/.test(ifname) && ifname !== 'lo') {
    world.ip('-n', c.name, 'link', 'add', ifname, 'type', 'veth', 'peer', 'name', 'fzpeer');
  }
  if (
    plugin === 'tuning' &&
    recipe.raw === null &&
    config !== null &&
    typeof config === 'object' &&
    !Array.isArray(config)
  ) {
    if (
      version &&
      !['0.1.0', '0.2.0'].includes(version) &&
      (config as Record<string, unknown>).prevResult === undefined
    ) {
      const prev = {
        cniVersion: version,
        interfaces: [{ name: ifname ?? 'eth0', sandbox: c.path }],
        ips: [],
      };
      stdin = JSON.stringify({ ...config, prevResult: prev });
    }
  }
  const paths = { containerId, netnsPath: c.path, notNetns, gone, dir: caseDir, binDir: world.binDir };
  const env = (cmd: string) => envFor(cmd, recipe.env, paths);
  const valid = configValid(recipe);
  const wellFormed = envWellFormed(recipe.env);
  const runTag = world.tag;
  const needles = [`fz${world.tag}`];
  const check = (
    before: WorldSnapshot,
    after: WorldSnapshot,
    when: string,
    ignoreLinks?: ReadonlySet<string>,
  ) => {
    for (const p of leftovers(before, after, {
      config,
      runTag,
      plugin,
      ...(ignoreLinks ? { ignoreLinks } : {}),
    })) {
      j.problems.push(`${when}: ${p}`);
    }
  };
  const refusesVersion = (call: FuzzCall, label: string) => {
    if (!valid || errorCode(call) !== 1) return;
    const msg = said(call);
    // A result without IPs (no IPAM) has no 0.1.0/0.2.0 form: the reference refuses that ADD too
    // ("cannot convert: no valid IP addresses"); ours undoes the attachment, which the leftover
    // check holds it to.
    if (label === 'ADD' && /no valid IP addresses/.test(msg)) return;
    if (/version/i.test(msg)) {
      j.problems.push(
        `${label}: refuses cniVersion ${JSON.stringify(recipe.version)} (${msg}); the reference accepts every version`,
      );
    }
  };
  const mustDel = (call: FuzzCall, label: string, required: boolean) => {
    judgeRun(j, call, label);
    refusesVersion(call, label);
    if (required && call.exitCode !== 0 && !call.timedOut)
      j.problems.push(`${label}: must exit 0, got ${said(call)}`);
  };
  try {
    const before = await world.snapshot(c.path, [dataDir], ctx.etcdPrefix);
    if (recipe.flow === 'del-only') {
      const del = await world.run(plugin, env('DEL'), stdin);
      mustDel(del, 'DEL without ADD', valid && wellFormed);
      check(before, await world.snapshot(c.path, [dataDir], ctx.etcdPrefix), 'after DEL without ADD');
      return { problems: j.problems, stdin, env: env('DEL') };
    }
    const killAfterMs = recipe.flow === 'sigkill' ? recipe.killAfterMs : undefined;
    const add = await world.run(plugin, env('ADD'), stdin, killAfterMs === undefined ? {} : { killAfterMs });
    stats.adds++;
    judgeRun(j, add, 'ADD', version);
    refusesVersion(add, 'ADD');
    const addOk = add.exitCode === 0 && !add.killed;
    if (addOk) stats.addsOk++;
    if (!addOk && !add.killed)
      check(before, await world.snapshot(c.path, [dataDir], ctx.etcdPrefix), 'after the failed ADD');
    // DEL must succeed after an ADD the plugin accepted, and for any config the docs show with an
    // env a runtime sends; after other failed ADDs it may fail, with a CNI error.
    const delRequired = wellFormed && (valid || addOk);
    if (recipe.flow === 'netns-gone' && addOk) {
      const peers0 = world.peeredLinks();
      world.removeContainer(c.name);
      await world.settle(peers0);
      const mid = await world.snapshot(undefined, [dataDir], ctx.etcdPrefix);
      const goneWithNetns = new Set([...before.node.links.keys()].filter((l) => !mid.node.links.has(l)));
      const del = await world.run(plugin, env('DEL'), stdin);
      mustDel(del, 'DEL after the netns is gone', delRequired);
      check(
        before,
        await world.snapshot(undefined, [dataDir], ctx.etcdPrefix),
        'after DEL (netns gone)',
        goneWithNetns,
      );
      return { problems: j.problems, stdin, env: env('DEL') };
    }
    if (addOk && atLeast040(version) && recipe.flow === 'lifecycle') {
      const prev = add.json;
      let checkStdin = stdin;
      try {
        checkStdin = JSON.stringify({ ...(JSON.parse(stdin) as object), prevResult: prev });
      } catch {
        // stdin is not an object: CHECK gets it as it is
      }
      const chk = await world.run(plugin, env('CHECK'), checkStdin);
      judgeRun(j, chk, 'CHECK');
      if (chk.exitCode !== 0 && !chk.timedOut)
        j.problems.push(`CHECK right after a successful ADD failed: ${said(chk)}`);
    }
    let delStdin = stdin;
    if (addOk && atLeast040(version)) {
      try {
        delStdin = JSON.stringify({ ...(JSON.parse(stdin) as object), prevResult: add.json });
      } catch {
        // not an object
      }
    }
    const del = await world.run(plugin, env('DEL'), delStdin);
    mustDel(del, add.killed ? 'DEL after a SIGKILLed ADD' : 'DEL', delRequired);
    check(
      before,
      await world.snapshot(c.path, [dataDir], ctx.etcdPrefix),
      add.killed ? `after ADD killed at ${killAfterMs} ms and DEL` : 'after DEL',
    );
    const del2 = await world.run(plugin, env('DEL'), delStdin);
    mustDel(del2, 'second DEL', delRequired);
    if (del.exitCode === 0 && del2.exitCode === 0) {
      check(before, await world.snapshot(c.path, [dataDir], ctx.etcdPrefix), 'after the second DEL');
    }
    return { problems: j.problems, stdin, env: env('ADD') };
  } finally {
    world.removeContainer(c.name);
    if (plugin === 'host-device') {
      // Wherever DEL left it: gone with the container, renamed, or back in the node.
      ipIgnoringFailure(world, ['link', 'del', hostDevice]);
    }
    if (existsSync(gone)) {
      j.problems.push(`a file at the gone CNI_NETNS ${gone}: something created it`);
      rmSync(gone, { force: true });
    }
    for (const f of machineStateNaming(needles))
      j.problems.push(`machine state: ${f} (outside the case's dirs)`);
    const hdNetns = `cnikit-hd-${createHash('sha256')
      .update(`${containerId}/${ifname ?? ''}`)
      .digest('hex')
      .slice(0, 16)}`;
    for (const p of strayNetns(j.pids, netnsBefore, new Set([hdNetns]))) j.problems.push(p);
  }
}

function ipIgnoringFailure(world: FuzzWorld, args: string[]): void {
  try {
    world.ipn(...args);
  } catch {
    // not there
  }
}

/** Settings of one plugin's property in a suite. */
export interface FuzzSuiteOptions {
  flows: Flow[];
  /** Time budget of the plugin's runs when CNI_KIT_FUZZ_RUNS is unset. */
  budgetMs: number;
  /** Runs that must have completed within the budget (a sanity floor). */
  minRuns: number;
  mutated?: number;
  envOk?: number;
  rawWeight?: number;
}

/** Plugins this run fuzzes (CNI_KIT_FUZZ_PLUGINS narrows). */
export function selectedPlugins(list: readonly FuzzPlugin[]): FuzzPlugin[] {
  const only = process.env.CNI_KIT_FUZZ_PLUGINS?.split(',').filter(Boolean);
  return list.filter((p) => !only || only.includes(p));
}

/**
 * Fuzzes one plugin: fast-check drives cases through runCase within the budget (or
 * CNI_KIT_FUZZ_RUNS cases); every failing case is collected, then all are reported at once with
 * the seed and the recipe, so one run shows every defect it met.
 */
/**
 * The fast-check seed: CNI_KIT_FUZZ_SEED when it is a number, a random one when it says `random`
 * or when a long run (CNI_KIT_FUZZ_RUNS) explores; otherwise, in `npm test`, a fixed seed per
 * plugin, so the suite replays the cases already judged instead of failing CI on a fresh draw
 * (exploring is the long run's job, and every failure prints its seed and recipe either way).
 */
export function fuzzSeed(env: string | undefined, exploring: boolean, pluginIndex: number): number {
  if (env !== undefined && env !== '' && env !== 'random') return Number(env);
  if (env === 'random' || exploring) return Math.floor(Math.random() * 2 ** 31);
  return 1_100_000 + pluginIndex * 7_919;
}

export async function fuzzPlugin(
  tctx: Pick<TestContext, 'signal' | 'onTestFinished'>,
  world: FuzzWorld,
  plugin: FuzzPlugin,
  arb: fc.Arbitrary<FuzzCase>,
  opts: FuzzSuiteOptions,
): Promise<{ failures: FuzzFailure[]; stats: FuzzStats; seed: number }> {
  const runs = Number(process.env.CNI_KIT_FUZZ_RUNS ?? 0);
  const replay = process.env.CNI_KIT_FUZZ_CASE;
  const index = FUZZ_PLUGINS.indexOf(plugin);
  const seed = fuzzSeed(process.env.CNI_KIT_FUZZ_SEED, runs > 0, index);
  const stats: FuzzStats = { cases: 0, runs: 0, adds: 0, addsOk: 0, maxRunMs: 0, ms: 0 };
  const failures: FuzzFailure[] = [];
  const started = Date.now();
  const one = async (recipe: FuzzCase, run: number) => {
    const r = await runCase(world, recipe, index, stats);
    if (r.problems.length) {
      const f = { plugin, seed, run, problems: r.problems, recipe, stdin: r.stdin, env: r.env };
      failures.push(f);
      if (process.env.CNI_KIT_FUZZ_LOG)
        appendFileSync(process.env.CNI_KIT_FUZZ_LOG, `${JSON.stringify({ ...f, tags: classify(f) })}\n`);
    }
  };
  if (replay) {
    const recipe = JSON.parse(replay) as FuzzCase;
    if (recipe.plugin === plugin) await one(recipe, 0);
    stats.ms = Date.now() - started;
    return { failures, stats, seed };
  }
  const fence = runFence(tctx);
  let run = 0;
  await fc
    .assert(
      fc.asyncProperty(arb, (recipe) => fence.run(() => one(recipe, run++))),
      {
        seed,
        numRuns: runs > 0 ? runs : 100_000,
        endOnFailure: true,
        ...(runs > 0 ? {} : { interruptAfterTimeLimit: opts.budgetMs, markInterruptAsFailure: false }),
      },
    )
    .catch((e: Error) => {
      // fast-check reports a budget spent before the first case as a failure; the minimum below
      // draws the cases instead.
      if (!/interrupted after 0 tests/.test(e.message)) throw e;
    });
  await fence.settle();
  // The budget is wall time, and a loaded machine can spend it on one or two slow cases (etcd,
  // a chain of delegates): the minimum is then drawn without a time limit, from the next seed,
  // so a slow run still judges that many cases instead of failing on speed.
  const minimum = Math.min(opts.minRuns, runs || opts.minRuns);
  if (!runs && failures.length === 0 && stats.cases < minimum) {
    const more = runFence(tctx); // the first fence is closed once settled
    await fc.assert(
      fc.asyncProperty(arb, (recipe) => more.run(() => one(recipe, run++))),
      { seed: seed + 1, numRuns: minimum - stats.cases, endOnFailure: true },
    );
    await more.settle();
  }
  stats.ms = Date.now() - started;
  if (stats.cases < minimum) {
    failures.push({
      plugin,
      seed,
      run: -1,
      problems: [`only ${stats.cases} case(s) ran within ${opts.budgetMs} ms; want at least ${opts.minRuns}`],
      stdin: '',
      env: {},
    });
  }
  return { failures, stats, seed };
}

/** Fails the test with every failing case, when there is one. */
export function assertNoFailures(failures: FuzzFailure[]): void {
  if (failures.length)
    throw new Error(`${failures.length} failing fuzz case(s):\n${formatFailures(failures)}`);
}

/** The failure report of a suite: every failing case with its seed, F-tags and replay recipe. */
export function formatFailures(failures: FuzzFailure[]): string {
  return failures
    .map((f) => {
      const tags = classify(f);
      return [
        `${f.plugin} seed ${f.seed} case #${f.run}${tags.length ? ` [${tags.join(', ')}]` : ''}:`,
        ...f.problems.slice(0, 8).map((p) => `  - ${p.slice(0, 400)}`),
        `  stdin: ${f.stdin.slice(0, 600)}`,
        `  env: ${JSON.stringify(f.env)}`,
        ...(f.recipe ? [`  replay: CNI_KIT_FUZZ_CASE='${JSON.stringify(f.recipe)}'`] : []),
      ].join('\n');
    })
    .join('\n');
}

export { KNOWN_VERSIONS };
