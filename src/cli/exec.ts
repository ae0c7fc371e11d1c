// `cni-kit exec`: runs a network through CniRuntime, as cnitool does, and prints the result.
// Environment variables cnitool reads keep their names and meaning (NETCONFPATH, CNI_PATH,
// CNI_ARGS, CAP_ARGS, CNI_IFNAME); flags override them.
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import {
  CniAggregateError,
  CniRuntime,
  loadConfFile,
  loadConfList,
  type RuntimeConf,
} from '../runtime/index.js';
import { type Attachment, CniError, ErrorCode, type NetConfList, parseCniArgs } from '../spec/index.js';
import { CliUsageError, parseVerbArgs, type Verb } from './args.js';

const COMMANDS = ['add', 'check', 'del', 'gc', 'status', 'version'] as const;
type ExecCommand = (typeof COMMANDS)[number];

const HELP = `usage: cni-kit exec <add|check|del|gc|status|version> <conflist|conf|network-name> [options]

Runs a network through cni-kit's runtime (libcni's behaviour: result cache, prevResult chaining,
DEL in reverse order), as cnitool does. The network is a .conflist/.conf/.json file, or the name
of a network in the config directory (NETCONFPATH, default /etc/cni/net.d).

options (the environment variable cnitool reads, if any, in brackets):
      --netns <path|name>   the container's network namespace; a bare name means /run/netns/<name>
                            (required for add and check)
      --id <id>             container ID (default: cni- and a hash of the netns path, as cnitool)
      --ifname <if>         interface name in the container [CNI_IFNAME] (default eth0)
      --args <K=V;...>      CNI_ARGS pairs [CNI_ARGS]
      --cap <json>          capability args, e.g. '{"portMappings":[...]}' [CAP_ARGS]
      --path <dirs>         plugin directories, ':'-separated [CNI_PATH] (default /opt/cni/bin)
      --conf-dir <dir>      where network names are looked up [NETCONFPATH]
      --cache <dir>         result cache directory (default /var/lib/cni)
      --valid <id/ifname>   gc: an attachment still in use (repeatable; others are collected)
      --timeout <ms>        per plugin call (default 60000)
      --json                errors as CNI error JSON on stdout (results are always JSON)
  -h, --help                this help

exit status: 0 on success, 1 when a plugin or the runtime fails, 2 on a usage mistake.`;

/** cnitool's container ID: "cni-" and the first 10 bytes of SHA-512 of the netns path, in hex. */
export function defaultContainerId(netns: string): string {
  return `cni-${createHash('sha512').update(netns).digest().subarray(0, 10).toString('hex')}`;
}

function netnsPath(v: string | undefined): string | undefined {
  if (v === undefined || v === '') return undefined;
  return v.includes('/') ? v : join('/run/netns', v);
}

async function loadNetwork(arg: string, confDir: string): Promise<NetConfList> {
  if (existsSync(arg) && statSync(arg).isFile()) return loadConfFile(arg);
  if (arg.includes('/') || /\.(conflist|conf|json)$/.test(arg)) {
    throw new CliUsageError(`${arg}: no such file`);
  }
  return loadConfList(confDir, arg);
}

function parseCap(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined || text === '') return undefined;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CliUsageError(`--cap/CAP_ARGS is not JSON (${(e as Error).message}): ${text}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new CliUsageError(`--cap/CAP_ARGS must be a JSON object, got ${text}`);
  }
  return v as Record<string, unknown>;
}

function parseValid(list: string[]): Attachment[] {
  return list.map((v) => {
    const i = v.lastIndexOf('/');
    if (i <= 0 || i === v.length - 1) throw new CliUsageError(`--valid ${v}: write <container-id>/<ifname>`);
    return { containerId: v.slice(0, i), ifname: v.slice(i + 1) };
  });
}

export const execVerb: Verb = {
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseVerbArgs(argv, {
      netns: { type: 'string' },
      id: { type: 'string' },
      ifname: { type: 'string' },
      args: { type: 'string' },
      cap: { type: 'string' },
      path: { type: 'string' },
      'conf-dir': { type: 'string' },
      cache: { type: 'string' },
      valid: { type: 'string', multiple: true },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
    });
    const [command, network, ...extra] = positionals;
    if (!command || !(COMMANDS as readonly string[]).includes(command)) {
      throw new CliUsageError(
        `the first argument is one of ${COMMANDS.join(', ')}, got ${command ?? 'nothing'}`,
      );
    }
    if (!network) throw new CliUsageError('name a .conflist/.conf file or a network');
    if (extra.length > 0) throw new CliUsageError(`unexpected argument ${extra[0]}`);
    const env = process.env;
    const timeoutMs = Number(values.timeout ?? 60_000);
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
      throw new CliUsageError(`--timeout ${values.timeout}: a positive number of milliseconds`);
    }
    const netns = netnsPath(values.netns);
    const cmd = command as ExecCommand;
    if ((cmd === 'add' || cmd === 'check') && !netns) throw new CliUsageError(`${cmd} needs --netns`);
    if (netns && !existsSync(netns)) throw new CliUsageError(`--netns ${netns}: no such namespace file`);
    const pluginDirs = (values.path ?? env.CNI_PATH ?? '/opt/cni/bin')
      .split(delimiter)
      .filter((d) => d !== '');
    const confDir = values['conf-dir'] ?? env.NETCONFPATH ?? '/etc/cni/net.d';
    const rtOpts = { pluginDirs, timeoutMs, ...(values.cache ? { cacheDir: values.cache } : {}) };
    const runtime = new CniRuntime(rtOpts);
    try {
      const list = await loadNetwork(network, confDir);
      const containerId = values.id ?? defaultContainerId(netns ?? list.name);
      const args = parseCniArgs(values.args ?? env.CNI_ARGS);
      const capabilityArgs = parseCap(values.cap ?? env.CAP_ARGS);
      const rt: RuntimeConf = {
        containerId,
        ifname: values.ifname ?? env.CNI_IFNAME ?? 'eth0',
        ...(netns ? { netns } : {}),
        ...(args.length ? { args } : {}),
        ...(capabilityArgs ? { capabilityArgs } : {}),
      };
      const print = (v: unknown) => process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
      switch (cmd) {
        case 'add':
          print(await runtime.addNetworkList(list, rt));
          break;
        case 'check':
          await runtime.checkNetworkList(list, rt);
          break;
        case 'del':
          await runtime.delNetworkList(list, rt);
          break;
        case 'gc':
          await runtime.gcNetworkList(list, { validAttachments: parseValid(values.valid ?? []) });
          break;
        case 'status':
          await runtime.getStatusNetworkList(list);
          break;
        case 'version': {
          const out: Record<string, unknown> = {};
          for (const p of list.plugins) out[p.type] = await runtime.getVersionInfo(p.type);
          print(out);
          break;
        }
      }
      return 0;
    } catch (err) {
      if (err instanceof CliUsageError) throw err;
      const e = err instanceof CniError ? err : CniError.from(err, ErrorCode.Internal);
      if (values.json) {
        process.stdout.write(`${JSON.stringify(e.toJSON(), null, 2)}\n`);
      } else {
        const parts = err instanceof CniAggregateError ? err.errors.map((x) => x.message) : [e.message];
        for (const m of parts) process.stderr.write(`cni-kit exec ${cmd}: ${m} (code ${e.code})\n`);
        if (e.details) process.stderr.write(`  ${e.details}\n`);
      }
      return 1;
    }
  },
};
