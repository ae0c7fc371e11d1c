// A vitest reporter that writes every skipped test with the reason it gave (`ctx.skip(reason)`) to
// the JSON file named by CNI_KIT_SKIP_REPORT: [{ file, fullName, note }], `file` relative to the
// working directory and `fullName` as vitest's JSON reporter spells it (describe blocks and the test
// name joined by spaces), so that scripts/test.mjs can match the two reports. A skip without a
// reason (`it.skip`, `skipIf`, a bare `ctx.skip()`) has no `note`; `it.todo` is listed with `todo`.
// vitest marks tests a name pattern leaves out as skipped too: the kernel lane, which runs with
// one, drops those itself (scripts/kernel-lane.ts).
import { writeFileSync } from 'node:fs';
import { relative } from 'node:path';

/** vitest's JSON reporter's full name: the enclosing suites' names and the test's, space-joined. */
function jsonFullName(task) {
  const names = [task.name];
  for (let s = task.suite; s; s = s.suite) if (s.type !== 'file' && s.name) names.unshift(s.name);
  return names.join(' ');
}

export default class SkipReporter {
  onTestRunEnd(testModules) {
    const out = process.env.CNI_KIT_SKIP_REPORT;
    if (!out) return;
    const skips = [];
    for (const mod of testModules) {
      const file = relative(process.cwd(), mod.moduleId);
      for (const test of mod.children.allTests()) {
        const r = test.result();
        if (r.state !== 'skipped') continue;
        skips.push({
          file,
          fullName: jsonFullName(test.task),
          ...(r.note ? { note: r.note } : {}),
          ...(test.options.mode === 'todo' ? { todo: true } : {}),
        });
      }
    }
    writeFileSync(out, JSON.stringify(skips, null, 2));
  }
}
