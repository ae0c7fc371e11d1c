// The conformance kit's vocabulary: what a run is asked to do and what it reports.

/** What `runConformance` holds a plugin to. Paths are of this machine; nothing is read lazily. */
export interface ConformOptions {
  /** The plugin executable (any language). */
  plugin: string;
  /** The network config: a single plugin config object (not a conflist), as parsed JSON. */
  config: Record<string, unknown>;
  /** Only these spec versions (intersected with what the plugin and the config allow). */
  versions?: readonly string[];
  /** CNI_IFNAME of every attachment (default `eth0`). */
  ifname?: string;
  /** How many ADDs run at once in the concurrency check (default 4). */
  concurrency?: number;
  /** Directories whose new files must be gone after DEL (the config's `dataDir`s are added). */
  dataDirs?: readonly string[];
  /** CNI_PATH entries (default: the binary's directory, /usr/lib/cni and /opt/cni/bin if present). */
  cniPath?: readonly string[];
  /** A prevResult fixture (a result of any version) for chained plugins. */
  prevResult?: Record<string, unknown>;
  /** Run the plugin in a node netns of the kit's own (default true) or in the caller's netns. */
  nodeNetns?: boolean;
  /** Shell command run (sh -c) inside the node netns right after creating it. */
  nodeSetup?: string;
  /**
   * Shell command run (sh -c) inside the node netns before each container is created, with
   * CONFORM_CONTAINER_ID and CONFORM_NETNS set: for plugins that consume something per container,
   * such as the device host-device moves in (a virtual device dies with a deleted netns).
   */
  containerSetup?: string | undefined;
  /** Deadline of one plugin call in ms (default 20000); the process group is killed after it. */
  timeoutMs?: number;
  /** Aborts the run: running plugins are killed and everything created is removed. */
  signal?: AbortSignal;
  /** Progress lines (one per finished check); default: none. */
  log?: (line: string) => void;
}

export type CheckStatus = 'pass' | 'fail' | 'skip';

/** One row of the report. */
export interface CheckResult {
  /** Stable check id, e.g. `add`, `leftovers:concurrent`, `error:bad-json`. */
  check: string;
  /** The spec version the check ran at; null for version-independent checks. */
  version: string | null;
  status: CheckStatus;
  /** Why it failed or was skipped, or a short summary of what passed. */
  detail: string;
  durationMs: number;
}

/** What a run found. Serialises with JSON.stringify (`--json` prints it). */
export interface ConformReport {
  plugin: string;
  network: string;
  type: string;
  /** The run's namespaces: the node netns has this name, containers `<netns>-<n>` (all removed). */
  netns: string;
  /** Versions the per-version checks ran at, oldest first. */
  versions: string[];
  /** Versions not tried, with the reason. */
  versionsNotTried: Array<{ version: string; reason: string }>;
  checks: CheckResult[];
  passed: number;
  failed: number;
  skipped: number;
  ok: boolean;
  /** Set when the run was aborted (signal); the checks so far are kept. */
  aborted?: boolean;
  durationMs: number;
}
