// Runs deploy/install.mjs the way its long-running modes run in a pod, up to the point where it
// waits for the cluster network's config, then stops it with SIGTERM (as the kubelet would).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const INSTALLER = fileURLToPath(new URL('../../deploy/install.mjs', import.meta.url));

/** The installer's exit code and everything it printed; it is killed after 20 s at the latest. */
export async function runInstallerUntilWaiting(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [INSTALLER, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d;
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d;
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  const deadline = Date.now() + 20_000;
  try {
    while (
      !out.includes('waiting for the cluster network') &&
      child.exitCode === null &&
      Date.now() < deadline
    ) {
      await new Promise((res) => setTimeout(res, 50));
    }
  } finally {
    child.kill('SIGTERM');
  }
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const code = await exited;
  clearTimeout(t);
  return { code, out };
}
