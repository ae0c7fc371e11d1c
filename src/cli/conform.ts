// `cni-kit conform`: the command of the conformance kit (src/conform). It parses options, runs
// runConformance and prints the report as a table, JSON or JUnit XML.
import { readFileSync, writeFileSync } from 'node:fs';
import {
  type ConformOptions,
  ConformUsageError,
  formatJUnit,
  formatTable,
  runConformance,
} from '../conform/index.js';
import { ALL_VERSIONS } from '../spec/index.js';
import { CliUsageError, parseVerbArgs, type Verb } from './args.js';

const HELP = `usage: cni-kit conform <plugin-binary> --config <conf.json> [options]

Holds a CNI plugin binary (any language) to the spec: VERSION, the error protocol, and per spec
version ADD/CHECK/DEL, DEL twice, DEL without ADD, DEL after the netns is gone, concurrent ADDs,
GC and STATUS (1.1.0), with nothing left behind after DEL. Needs root (network namespaces).

options:
  --config FILE         the plugin's network config (one plugin object, not a conflist)
  --versions LIST       only these versions, e.g. 0.3.1,1.0.0 (default: all the plugin lists)
  --ifname NAME         CNI_IFNAME (default eth0)
  --concurrency N       ADDs run at once in the concurrency check (default 4)
  --data-dir DIR        a directory of plugin state that must have no new files after DEL
                        (repeatable; the config's dataDir and ipam.dataDir are added)
  --path DIRS           CNI_PATH (default: the binary's directory, /usr/lib/cni, /opt/cni/bin)
  --prev-result FILE    a prevResult fixture (a result of any version) for chained plugins
  --no-node-netns       run the plugin in this netns instead of a node netns of its own
  --node-setup CMD      shell command run in the node netns after creating it
  --container-setup CMD shell command run in the node netns before each container is created
                        (CONFORM_CONTAINER_ID and CONFORM_NETNS set), e.g. to make the device a
                        host-device config takes
  --junit FILE          also write the report as JUnit XML
  --json                print the report as JSON instead of a table
  --timeout-ms N        deadline of one plugin call (default 20000)

exit status: 0 all checks passed or skipped, 1 a check failed, 2 usage error, 130 interrupted`;

const OPTIONS = {
  config: { type: 'string' },
  versions: { type: 'string' },
  ifname: { type: 'string' },
  concurrency: { type: 'string' },
  'data-dir': { type: 'string', multiple: true },
  path: { type: 'string' },
  'prev-result': { type: 'string' },
  'no-node-netns': { type: 'boolean' },
  'node-setup': { type: 'string' },
  'container-setup': { type: 'string' },
  junit: { type: 'string' },
  json: { type: 'boolean' },
  'timeout-ms': { type: 'string' },
} as const;

function readJsonObject(file: string, what: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliUsageError(`${what} ${file}: ${(e as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CliUsageError(`${what} ${file}: not JSON (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new CliUsageError(`${what} ${file}: must hold a JSON object`);
  }
  return v as Record<string, unknown>;
}

function positiveInt(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1)
    throw new CliUsageError(`--${name}: ${value} is not a positive integer`);
  return Number(value);
}

/** Parses the verb's argv into options (usage errors as CliUsageError). */
export function parseConformArgs(argv: string[]): { options: ConformOptions; junit?: string; json: boolean } {
  const { values, positionals } = parseVerbArgs(argv, OPTIONS);
  if (positionals.length !== 1) throw new CliUsageError('give exactly one plugin binary');
  if (!values.config) throw new CliUsageError('--config is required');
  const options: ConformOptions = {
    plugin: positionals[0]!,
    config: readJsonObject(values.config, '--config'),
  };
  if (values.versions !== undefined) {
    const list = values.versions
      .split(',')
      .map((v) => v.trim())
      .filter(Boolean);
    for (const v of list) {
      if (!(ALL_VERSIONS as readonly string[]).includes(v)) {
        throw new CliUsageError(`--versions: ${v} is not a CNI spec version (${ALL_VERSIONS.join(', ')})`);
      }
    }
    if (!list.length) throw new CliUsageError('--versions: empty list');
    options.versions = list;
  }
  if (values.ifname !== undefined) options.ifname = values.ifname;
  const n = positiveInt(values.concurrency, 'concurrency');
  if (n !== undefined) options.concurrency = n;
  const t = positiveInt(values['timeout-ms'], 'timeout-ms');
  if (t !== undefined) options.timeoutMs = t;
  if (values['data-dir']) options.dataDirs = values['data-dir'];
  if (values.path !== undefined) options.cniPath = values.path.split(':').filter(Boolean);
  if (values['prev-result'] !== undefined) {
    options.prevResult = readJsonObject(values['prev-result'], '--prev-result');
  }
  if (values['no-node-netns']) options.nodeNetns = false;
  if (values['node-setup'] !== undefined) options.nodeSetup = values['node-setup'];
  if (values['container-setup'] !== undefined) options.containerSetup = values['container-setup'];
  return {
    options,
    ...(values.junit !== undefined ? { junit: values.junit } : {}),
    json: values.json === true,
  };
}

export const conformVerb: Verb = {
  help: HELP,
  async run(argv) {
    const { options, junit, json } = parseConformArgs(argv);
    if (process.getuid?.() !== 0) throw new Error('needs root: it creates network namespaces');
    const ac = new AbortController();
    const onSignal = () => ac.abort();
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    let report: Awaited<ReturnType<typeof runConformance>>;
    try {
      report = await runConformance({
        ...options,
        signal: ac.signal,
        ...(process.stderr.isTTY && !json ? { log: (l: string) => process.stderr.write(`${l}\n`) } : {}),
      });
    } catch (e) {
      if (e instanceof ConformUsageError) throw new CliUsageError(e.message);
      throw e;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    process.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : `${formatTable(report)}\n`);
    if (junit) writeFileSync(junit, formatJUnit(report));
    if (report.aborted) return 130;
    return report.failed > 0 ? 1 : 0;
  },
};
