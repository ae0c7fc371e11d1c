import type { PluginSpec } from './context.js';
import { runPlugin } from './run.js';

// The process edge: the only place that reads process.env and stdin and writes stdout and the
// exit status for a plugin.

async function readAll(stream: NodeJS.ReadableStream): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks);
}

/**
 * Runs a plugin as a CNI binary: env and stdin in, one JSON document on stdout, exit status 0 or 1.
 * SIGTERM aborts `ctx.signal` so handlers can roll back before the runtime kills the process.
 */
export function pluginMain<C>(spec: PluginSpec<C>, options: Omit<PluginSpec<C>, keyof PluginSpec<C> & ('add' | 'del' | 'check' | 'gc' | 'status')> = {}): void {
  const merged: PluginSpec<C> = { ...spec, ...options };
  const abort = new AbortController();
  const onTerm = () => abort.abort(new Error('terminated by SIGTERM'));
  process.once('SIGTERM', onTerm);
  runPlugin(merged, {
    env: process.env,
    stdin: () => readAll(process.stdin),
    signal: abort.signal,
    log: (line) => process.stderr.write(`${line}\n`),
  }).then(
    (out) => {
      process.removeListener('SIGTERM', onTerm);
      const done = () => process.exit(out.exitCode);
      if (out.stdout) process.stdout.write(out.stdout, done);
      else done();
    },
    (err) => {
      // runPlugin turns every error into an outcome; reaching here is a bug in the SDK itself.
      process.stdout.write(JSON.stringify({ code: 999, msg: `cni-kit internal error: ${String(err)}` }), () =>
        process.exit(1),
      );
    },
  );
}
