// The `cni-kit` command: build a plugin, run a network, hold a plugin to the spec, serve plugins
// from one process, hold DHCP leases.
// Each verb lives in its own module and is loaded only when asked for, so `cni-kit --help`
// stays cheap.
import { CliUsageError, type Verb } from './args.js';

const VERBS: Record<string, { summary: string; load: () => Promise<Verb> }> = {
  build: {
    summary: 'bundle a plugin written against cni-kit into one executable file',
    load: async () => (await import('./build.js')).buildVerb,
  },
  exec: {
    summary: 'run a network (conf or conflist) through the CNI runtime, as cnitool does',
    load: async () => (await import('./exec.js')).execVerb,
  },
  daemon: {
    summary: 'serve every plugin of a folder from one long-lived process (daemon mode)',
    load: async () => (await import('./daemon.js')).daemonVerb,
  },
  'dhcp-daemon': {
    summary: 'hold DHCP leases for the dhcp IPAM plugin (its daemon)',
    load: async () => (await import('./dhcp-daemon.js')).dhcpDaemonVerb,
  },
  conform: {
    summary: 'hold any CNI plugin binary to the spec: the conformance kit',
    load: async () => (await import('./conform.js')).conformVerb,
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(VERBS).map((v) => v.length));
  return [
    'usage: cni-kit <command> [options]',
    '',
    'commands:',
    ...Object.entries(VERBS).map(([name, v]) => `  ${name.padEnd(width)}  ${v.summary}`),
    '',
    "Run 'cni-kit <command> --help' for a command's options.",
  ].join('\n');
}

/** Runs the CLI with the given arguments (without node and script) and returns the exit code. */
export async function cliMain(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${cliVersion()}\n`);
    return 0;
  }
  const entry = VERBS[name];
  if (!entry) {
    process.stderr.write(`cni-kit: unknown command ${JSON.stringify(name)}\n\n${usage()}\n`);
    return 2;
  }
  const verb = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${verb.help}\n`);
    return 0;
  }
  try {
    return await verb.run(rest);
  } catch (e) {
    if (e instanceof CliUsageError) {
      process.stderr.write(`cni-kit ${name}: ${e.message}\n\n${verb.help}\n`);
      return 2;
    }
    process.stderr.write(`cni-kit ${name}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

/** The package version, read from the package.json the CLI ships in. */
function cliVersion(): string {
  // Injected by the bundler; the source run (tsx) reads package.json instead.
  return typeof CNI_KIT_VERSION === 'string' ? CNI_KIT_VERSION : 'dev';
}
declare const CNI_KIT_VERSION: string | undefined;
