import { readFileSync, writeSync } from 'node:fs';
import type { PluginOptions, PluginSpec } from './context.js';
import { currentPluginHost, PLUGIN_HOST_PROTOCOL } from './host.js';
import { DEFAULT_SUPPORTED_VERSIONS, type PluginOutcome, runPlugin, withOptions } from './run.js';
import { guardProcess, realStdoutWrite } from './stdout-guard.js';

// The process edge: the only place that reads process.env and stdin and writes stdout and the
// exit status for a plugin.

async function readAll(stream: NodeJS.ReadableStream): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks);
}

/**
 * Reads all of stdin. A blocking read of fd 0 avoids building process.stdin (a net.Socket for a
 * pipe), which costs a plugin tens of milliseconds of start-up; a non-blocking fd falls back to it.
 */
async function readStdin(): Promise<Uint8Array> {
  try {
    return readFileSync(0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN') return readAll(process.stdin);
    throw e;
  }
}

/** Writes to fd 1 or 2 directly (process.stdout would build a stream first); EAGAIN falls back. */
function writeFd(fd: 1 | 2, text: string, done: () => void): void {
  const buf = Buffer.from(text);
  let off = 0;
  try {
    while (off < buf.length) off += writeSync(fd, buf, off);
    done();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') {
      done();
      return;
    }
    // stdout through the guard's saved reference: plugin code may have replaced process.stdout.write.
    if (fd === 1) realStdoutWrite(buf.subarray(off), done);
    else process.stderr.write(buf.subarray(off), () => done());
  }
}

/**
 * Runs a plugin as a CNI binary: env and stdin in, one JSON document on stdout, exit status 0 or 1.
 * SIGTERM aborts `ctx.signal` so handlers can roll back before the runtime kills the process.
 * Until the process exits, `console.*` and `process.stdout.write` go to stderr: the result is
 * written to fd 1 directly, and nothing else reaches stdout. Loaded by a plugin host (the cni-kit
 * daemon, see ./host.ts), it registers the plugin with the host instead and returns.
 */
export function pluginMain<C>(spec: PluginSpec<C>, options: PluginOptions<C> = {}): void {
  const merged = withOptions(spec, options);
  // Loaded by a long-lived host (the cni-kit daemon): hand the plugin over; the process is not ours.
  const host = currentPluginHost();
  if (host) {
    host.register({
      protocol: PLUGIN_HOST_PROTOCOL,
      supportedVersions: merged.supportedVersions ?? DEFAULT_SUPPORTED_VERSIONS,
      run: (input) => runPlugin(merged, input),
    });
    return;
  }
  const abort = new AbortController();
  const onTerm = () => abort.abort(new Error('terminated by SIGTERM'));
  process.once('SIGTERM', onTerm);
  const toStderr = (line: string) => writeFd(2, `${line}\n`, () => {});
  let exitCode = 1;
  const guard = guardProcess(toStderr);
  (async () => {
    let out: PluginOutcome;
    try {
      out = await runPlugin(merged, {
        env: process.env,
        stdin: readStdin,
        signal: abort.signal,
        log: toStderr,
      });
    } catch (err) {
      // runPlugin turns every error into an outcome; reaching here is a bug in the SDK itself.
      out = {
        stdout: JSON.stringify({ code: 999, msg: `cni-kit internal error: ${String(err)}` }),
        stderr: '',
        exitCode: 1,
      };
    }
    process.removeListener('SIGTERM', onTerm);
    exitCode = out.exitCode;
    guard.flush();
    if (out.stdout) await new Promise<void>((done) => writeFd(1, out.stdout, done));
  })().finally(() => process.exit(exitCode));
}
