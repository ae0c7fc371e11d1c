// One conformance run's state and the moves every check is made of: plugin calls with the CNI
// environment, container namespaces (with the prevResult scaffolding for chained plugins),
// snapshots of the node, the containers and the data dirs, and the report rows.
import { delimiter } from 'node:path';
import { convertResult, type Result } from '../spec/index.js';
import { BY_DESIGN_LEFTOVERS } from './allowlist.js';
import { addNetns, delNetns, inNetns, NETNS_PREFIX } from './netns.js';
import { type ProcOutcome, runProc } from './proc.js';
import { buildScaffold } from './scaffold.js';
import {
  diffFileSnapshots,
  diffNetSnapshots,
  type NetSnapshot,
  takeFileSnapshot,
  takeNetSnapshot,
} from './snapshot.js';
import type { CheckResult, CheckStatus } from './types.js';
import { type Json, parseSingleJson } from './validate.js';

/** One container: its ID, netns and (for chained plugins) the prevResult the kit built for it. */
export interface Container {
  id: string;
  nsName: string;
  netns: string;
  prev?: Result;
  /** The ADD result as printed, once an ADD printed one JSON document. */
  result?: Json;
  /** An ADD ran and no DEL has succeeded since: the cleanup DELs it. */
  attached: boolean;
  /** The version of the last ADD. */
  version?: string;
}

/** A call's outcome with stdout parsed as one JSON document when it is one. */
export interface Call extends ProcOutcome {
  json?: Json;
  jsonError?: string;
}

export interface CallSpec {
  command: string;
  container?: Container | undefined;
  /** CNI_NETNS override (e.g. a path that no longer exists). */
  netns?: string;
  /** Variables left out of the environment. */
  omit?: readonly string[];
  stdin: string;
}

/** A failed precondition or kit problem: the step records it instead of a pass. */
export class StepFailure extends Error {
  constructor(
    message: string,
    readonly status: CheckStatus = 'fail',
  ) {
    super(message);
  }
}

export class AbortedError extends Error {}

export interface RunSettings {
  plugin: string;
  config: Record<string, unknown>;
  ifname: string;
  concurrency: number;
  dataDirs: string[];
  cniPath: string[];
  prevFixture: Result | undefined;
  nodeNetns: string | undefined;
  timeoutMs: number;
  signal: AbortSignal | undefined;
  tag: string;
  log: ((line: string) => void) | undefined;
  containerSetup: string | undefined;
}

export class RunContext {
  readonly checks: CheckResult[] = [];
  /** Containers whose netns still exists. */
  readonly containers = new Set<Container>();
  /** Every container of the run, for the cleanup DELs. */
  readonly all: Container[] = [];
  /** Links the kit created (scaffold host ends): excluded from every diff. */
  readonly kitLinks = new Set<string>();
  readonly sharedLinks: ReadonlySet<string>;
  private next = 0;
  private readonly baseEnv: NodeJS.ProcessEnv;

  constructor(readonly s: RunSettings) {
    this.sharedLinks = new Set(BY_DESIGN_LEFTOVERS.sharedLinks(s.config));
    this.baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CNI_')));
  }

  get chained(): boolean {
    return this.s.prevFixture !== undefined;
  }

  throwIfAborted(): void {
    if (this.s.signal?.aborted) throw new AbortedError('aborted');
  }

  /** Runs the plugin once with the CNI environment of `spec`. */
  async call(spec: CallSpec): Promise<Call> {
    this.throwIfAborted();
    const env: NodeJS.ProcessEnv = {
      ...this.baseEnv,
      CNI_COMMAND: spec.command,
      CNI_PATH: this.s.cniPath.join(delimiter),
    };
    if (spec.container) {
      env.CNI_CONTAINERID = spec.container.id;
      env.CNI_NETNS = spec.netns ?? spec.container.netns;
      env.CNI_IFNAME = this.s.ifname;
    }
    for (const k of spec.omit ?? []) delete env[k];
    const [file, args] = inNetns(this.s.nodeNetns, this.s.plugin, []);
    const out: Call = await runProc(file, args, {
      env,
      stdin: spec.stdin,
      timeoutMs: this.s.timeoutMs,
      signal: this.s.signal,
    });
    this.throwIfAborted();
    const parsed = parseSingleJson(out.stdout);
    if ('value' in parsed) out.json = parsed.value;
    else out.jsonError = parsed.why;
    return out;
  }

  /** The config at `version`; `prevResult` replaces the fixture's (null: none at all). */
  configFor(version: string, prevResult?: Json | Result | null, extra: Record<string, unknown> = {}): string {
    const c: Record<string, unknown> = { ...this.s.config, cniVersion: version, ...extra };
    delete c.prevResult;
    if (prevResult !== null && prevResult !== undefined) c.prevResult = prevResult;
    return JSON.stringify(c);
  }

  /** The kit-built prevResult of a container at `version`. */
  prevFor(c: Container, version: string): Json | undefined {
    return c.prev ? (convertResult(c.prev, version) as unknown as Json) : undefined;
  }

  /** A fresh container netns, with the prevResult scaffolding when the plugin is chained. */
  /**
   * A fresh container netns. `forAdd: false` makes one for the error-protocol checks, whose ADDs
   * never succeed: no prevResult scaffold and no container setup.
   */
  async newContainer(forAdd = true): Promise<Container> {
    this.throwIfAborted();
    const n = this.next++;
    const nsName = `${NETNS_PREFIX}${this.s.tag}-${n}`;
    const c: Container = { id: `ck-${this.s.tag}-${n}`, nsName, netns: '', attached: false };
    const setup = this.s.containerSetup;
    if (forAdd && setup) {
      // One at a time, so a setup that checks before it creates never races another.
      const turn = this.setupQueue.then(() => this.containerSetup(setup, c));
      this.setupQueue = turn.catch(() => undefined);
      await turn;
    }
    c.netns = await addNetns(nsName);
    this.containers.add(c);
    this.all.push(c);
    if (forAdd && this.s.prevFixture) {
      const hostName = `ckh${this.s.tag.slice(0, 6)}${n}`;
      this.kitLinks.add(hostName);
      c.prev = await buildScaffold(this.s.prevFixture, {
        containerNetns: c.netns,
        nodeNetns: this.s.nodeNetns,
        ifname: this.s.ifname,
        hostName,
        offset: n,
      });
    }
    return c;
  }

  private setupQueue: Promise<unknown> = Promise.resolve();

  private async containerSetup(setup: string, c: Container): Promise<void> {
    const [f, a] = inNetns(this.s.nodeNetns, 'sh', ['-c', setup]);
    const env = { ...process.env, CONFORM_CONTAINER_ID: c.id, CONFORM_NETNS: `/run/netns/${c.nsName}` };
    const r = await runProc(f, a, { env, timeoutMs: this.s.timeoutMs, signal: this.s.signal });
    if (r.exitCode !== 0) {
      throw new StepFailure(`--container-setup failed (exit ${r.exitCode}): ${r.stderr.trim()}`);
    }
  }

  /**
   * Best-effort DEL of every container still attached and removal of every container netns,
   * ignoring the abort signal (a short deadline instead): the run's cleanup.
   */
  async cleanup(): Promise<void> {
    const [file, args] = inNetns(this.s.nodeNetns, this.s.plugin, []);
    await Promise.all(
      this.all
        .filter((c) => c.attached)
        .map((c) =>
          runProc(file, args, {
            env: {
              ...this.baseEnv,
              CNI_COMMAND: 'DEL',
              CNI_CONTAINERID: c.id,
              CNI_NETNS: c.netns,
              CNI_IFNAME: this.s.ifname,
              CNI_PATH: this.s.cniPath.join(delimiter),
            },
            stdin: this.configFor(c.version ?? String(this.s.config.cniVersion ?? '1.0.0'), null),
            timeoutMs: Math.min(5000, this.s.timeoutMs),
          }),
        ),
    );
    // Every container's name, removed or not: a plugin may have created a file at a stale path.
    await Promise.all(this.all.map((c) => this.removeContainer(c)));
  }

  async removeContainer(c: Container): Promise<void> {
    await delNetns(c.nsName);
    this.containers.delete(c);
  }

  async snapshot(c?: Container): Promise<NetSnapshot> {
    this.throwIfAborted();
    return takeNetSnapshot(c ? c.netns : this.s.nodeNetns);
  }

  async files(): Promise<Set<string>> {
    return takeFileSnapshot(this.s.dataDirs);
  }

  /** What differs between two snapshots of the node, a container and the data dirs. */
  leftovers(
    node: [NetSnapshot, NetSnapshot],
    files: [Set<string>, Set<string>],
    container?: [NetSnapshot, NetSnapshot],
    goneWithNetns: ReadonlySet<string> = new Set(),
  ): string[] {
    // Links the kernel destroyed with a deleted container netns are not the plugin's doing.
    const kitLinks = goneWithNetns.size ? new Set([...this.kitLinks, ...goneWithNetns]) : this.kitLinks;
    const ctx = { kitLinks, sharedLinks: this.sharedLinks, runTag: this.s.tag };
    return [
      ...diffNetSnapshots(node[0], node[1], ctx).map((p) => `node: ${p}`),
      ...(container
        ? diffNetSnapshots(container[0], container[1], { ...ctx, sharedLinks: new Set() }).map(
            (p) => `container: ${p}`,
          )
        : []),
      ...diffFileSnapshots(files[0], files[1]),
    ];
  }

  /** Records one report row. */
  record(check: string, version: string | null, status: CheckStatus, detail: string, started: number): void {
    const row: CheckResult = { check, version, status, detail, durationMs: Date.now() - started };
    this.checks.push(row);
    this.s.log?.(`${status.toUpperCase().padEnd(4)} ${check}${version ? ` @${version}` : ''}: ${detail}`);
  }

  /**
   * Runs one check: `fn` returns the pass detail, throws StepFailure for a failure or skip with its
   * reason; any other error is a failure of the kit's own work, named as such.
   */
  async step(check: string, version: string | null, fn: () => Promise<string>): Promise<boolean> {
    const started = Date.now();
    try {
      const detail = await fn();
      this.record(check, version, 'pass', detail, started);
      return true;
    } catch (e) {
      if (e instanceof AbortedError) throw e;
      if (this.s.signal?.aborted) throw new AbortedError('aborted');
      if (e instanceof StepFailure) this.record(check, version, e.status, e.message, started);
      else
        this.record(
          check,
          version,
          'fail',
          `kit error: ${e instanceof Error ? e.message : String(e)}`,
          started,
        );
      return false;
    }
  }

  skip(check: string, version: string | null, reason: string): void {
    this.record(check, version, 'skip', reason, Date.now());
  }
}

export const fail = (msg: string): StepFailure => new StepFailure(msg, 'fail');
export const skipped = (msg: string): StepFailure => new StepFailure(msg, 'skip');
