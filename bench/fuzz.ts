// bench/fuzz: the long run of the black-box fuzz and SIGKILL suites (test/fuzz). The suites in
// `npm test` run each plugin for a few seconds; this runs N cases per plugin and suite (default
// 200), writes every failing case to a JSON-lines log (with its seed and a replayable recipe) and
// prints a summary: cases per plugin, failing cases grouped by the first invariant they broke.
// Uses dist/bin as built (npm run build first); runs as root, in namespaces of its own.
// Usage: npx tsx bench/fuzz.ts [cases-per-plugin] [log file]
// Replay one case: CNI_KIT_FUZZ_CASE='<recipe>' npx vitest run test/fuzz/<suite>.fuzz.test.ts
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const runs = Number(process.argv[2] ?? 200);
const log = process.argv[3] ?? join(tmpdir(), `cni-kit-fuzz-${process.pid}.jsonl`);
const root = fileURLToPath(new URL('..', import.meta.url));
if (!existsSync(join(root, 'dist/bin/bridge')))
  throw new Error('dist/bin is missing: run npm run build first');
rmSync(log, { force: true });

const started = Date.now();
const r = spawnSync('npx', ['vitest', 'run', 'test/fuzz'], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
  encoding: 'utf8',
  env: {
    ...process.env,
    NO_COLOR: '1',
    FORCE_COLOR: '0',
    CNI_KIT_BUILT: '1',
    CNI_KIT_FUZZ_RUNS: String(runs),
    CNI_KIT_FUZZ_LOG: log,
  },
});
const summary = (r.stdout ?? '').split('\n').filter((l) => /^fuzz \S+ \S+.*: seed/.test(l));
console.log(summary.join('\n'));

interface Logged {
  plugin: string;
  seed: number;
  run: number;
  problems: string[];
  tags: string[];
}
const failures: Logged[] = existsSync(log)
  ? readFileSync(log, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Logged)
  : [];
const groups = new Map<string, Logged[]>();
for (const f of failures) {
  // The first problem without the values that differ from case to case.
  const key = `${f.plugin}: ${(f.problems[0] ?? '')
    .replace(/\/[^\s"]+/g, '<path>')
    .replace(/\d+(\.\d+){3}(\/\d+)?/g, '<ip>')
    .slice(0, 160)}`;
  groups.set(key, [...(groups.get(key) ?? []), f]);
}
console.log(
  `\n${failures.length} failing case(s) in ${Math.round((Date.now() - started) / 1000)} s; log: ${log}`,
);
for (const [k, list] of [...groups].sort((a, b) => b[1].length - a[1].length)) {
  const tags = [...new Set(list.flatMap((f) => f.tags))].join(', ');
  console.log(
    `${String(list.length).padStart(4)}  ${k}${tags ? `  [${tags}]` : ''}  (e.g. seed ${list[0]!.seed} case #${list[0]!.run})`,
  );
}
process.exitCode = r.status ?? 1;
