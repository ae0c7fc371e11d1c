// `cni-kit dhcp-daemon`: the daemon the dhcp IPAM plugin talks to (the reference's `dhcp daemon`).
import {
  DEFAULT_DHCP_SOCKET,
  DEFAULT_TIMING,
  getDhcpDaemon,
  linuxDhcpNet,
  startDhcpDaemon,
} from '../ipam/index.js';
import { CliUsageError, parseVerbArgs, type Verb } from './args.js';

const HELP = `usage: cni-kit dhcp-daemon [options]

Acquires DHCP leases for containers whose network config has "ipam": {"type": "dhcp"}, in the
container's netns over the container's interface, keeps them renewed (T1) and rebound (T2), and
releases them when the attachment is deleted. The dhcp plugin reaches it over a Unix socket. Logs
are JSON lines on stderr. SIGTERM or SIGINT stops it (leases are not released, as the reference).

options:
      --socket-path <path>      the socket (default ${DEFAULT_DHCP_SOCKET}; a config's
                                ipam.daemonSocketPath must name the same one)
      --hostprefix <dir>        the host's root when the daemon runs in a container: prefixed to
                                the socket and to every netns path
      --broadcast               ask DHCP servers to broadcast their replies
      --timeout <dur>           wait for each reply (default ${DEFAULT_TIMING.timeoutMs / 1000}s)
      --resend-max <dur>        longest pause between retries (default ${DEFAULT_TIMING.resendMaxMs / 1000}s)
      --resend-timeout <dur>    give up acquiring after (default ${DEFAULT_TIMING.resendTimeoutMs / 1000}s)
      --pidfile <path>          write the daemon's pid here (absolute path)
      --probe                   ask a running daemon instead; exit 0 when it answers
  -h, --help                    this help

Durations: a number with ms, s, m or h (Go style, e.g. 10s, 1m2s, 500ms).`;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A Go-style duration ("10s", "1m2s", "500ms") in milliseconds. */
export function parseDuration(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const parts = [...v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (v === '' || parts.map((p) => p[0]).join('') !== v)
    throw new CliUsageError(`--${flag}: ${JSON.stringify(v)} is not a duration; use e.g. 10s, 1m2s or 500ms`);
  const ms = parts.reduce((sum, p) => sum + Number(p[1]) * (UNITS[p[2] as string] as number), 0);
  if (ms <= 0) throw new CliUsageError(`--${flag}: ${JSON.stringify(v)} must be longer than 0`);
  return ms;
}

/** The `dhcp-daemon` verb. */
export const dhcpDaemonVerb: Verb = {
  help: HELP,
  async run(argv) {
    const { values, positionals } = parseVerbArgs(argv, {
      'socket-path': { type: 'string' },
      hostprefix: { type: 'string' },
      broadcast: { type: 'boolean' },
      timeout: { type: 'string' },
      'resend-max': { type: 'string' },
      'resend-timeout': { type: 'string' },
      pidfile: { type: 'string' },
      probe: { type: 'boolean' },
    });
    if (positionals.length > 0)
      throw new CliUsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    const socketPath = values['socket-path'] ?? DEFAULT_DHCP_SOCKET;
    if (values.probe) {
      const full = `${values.hostprefix ?? ''}${socketPath}`;
      const r = await getDhcpDaemon(full, '/healthz');
      process.stdout.write(r.status === 200 ? `${r.body}\n` : `no cni-kit dhcp daemon answers at ${full}\n`);
      return r.status === 200 ? 0 : 1;
    }
    const timing = {
      ...(values.broadcast ? { broadcast: true } : {}),
      ...opt('timeoutMs', parseDuration('timeout', values.timeout)),
      ...opt('resendMaxMs', parseDuration('resend-max', values['resend-max'])),
      ...opt('resendTimeoutMs', parseDuration('resend-timeout', values['resend-timeout'])),
    };
    if (values.pidfile !== undefined && !values.pidfile.startsWith('/'))
      throw new CliUsageError(`--pidfile: ${JSON.stringify(values.pidfile)} is not an absolute path`);
    const daemon = await startDhcpDaemon({
      socketPath,
      hostPrefix: values.hostprefix,
      pidfile: values.pidfile,
      timing,
      net: await linuxDhcpNet(),
    });
    process.on('unhandledRejection', (e) =>
      process.stderr.write(
        `${JSON.stringify({ level: 'error', msg: 'unhandled rejection', error: String(e) })}\n`,
      ),
    );
    await new Promise<void>((resolve) => {
      const stop = () => daemon.close().then(resolve, resolve);
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
    return 0;
  },
};

function opt<K extends string>(k: K, v: number | undefined): { [P in K]?: number } {
  return (v === undefined ? {} : { [k]: v }) as { [P in K]?: number };
}
