// npm test's totals (scripts/test.mjs): which host-side skips the kernel lane made up for, the
// phase and final lines, and the skip reasons. Plain functions over vitest's JSON reports, so that
// test/kernel/totals.test.ts can check them on reports of the real shape.
//
// A test that skips on the host for a link kind its kernel lacks and that the lane then ran and
// passed (same file, same full name; in the same plugin mode) is not a skip of the run: it ran, in
// the lane. Nothing else is taken off: a host skip whose test the lane did not run, or ran and
// failed or skipped, stays counted as skipped.

const SKIPPED = new Set(['skipped', 'pending']);
/** The lane names its daemon-mode pass's tests so (scripts/kernel-lane.ts). */
export const DAEMON_PREFIX = '(daemon mode) ';

/** A report's file name relative to `cwd` (vitest writes absolute paths). */
export function relFile(name, cwd) {
  const n = String(name ?? '');
  return n.startsWith(`${cwd}/`) ? n.slice(cwd.length + 1) : n;
}

/** `file \0 fullName` of every test of `report` whose status is in `statuses`. */
function keys(report, statuses, cwd) {
  const out = new Set();
  for (const f of report?.testResults ?? []) {
    const file = relFile(f.name, cwd);
    for (const t of f.assertionResults ?? []) if (statuses.has(t.status)) out.add(`${file}\0${t.fullName}`);
  }
  return out;
}

/**
 * The skipped tests of a host phase's report that the kernel lane ran and passed: the file is a
 * KERNEL_LANE entry's, the full name matches that entry's pattern, and the lane's report has a
 * passed test of that file with that exact full name (prefixed "(daemon mode) " when `daemon`).
 * Returns them as { file, fullName }.
 */
export function laneCredit({ host, lane, entries, daemon = false, cwd = process.cwd() }) {
  const passed = keys(lane, new Set(['passed']), cwd);
  const credited = [];
  for (const f of host?.testResults ?? []) {
    const file = relFile(f.name, cwd);
    const patterns = (entries ?? []).filter((e) => e.file === file).map((e) => new RegExp(e.tests));
    if (patterns.length === 0) continue;
    for (const t of f.assertionResults ?? []) {
      if (!SKIPPED.has(t.status)) continue;
      if (!patterns.some((re) => re.test(t.fullName))) continue;
      const laneName = daemon ? `${DAEMON_PREFIX}${t.fullName}` : t.fullName;
      if (passed.has(`${file}\0${laneName}`)) credited.push({ file, fullName: t.fullName });
    }
  }
  return credited;
}

/** "exec mode: 1374 passed, 0 failed, 7 skipped (43 more ran in the kernel lane)". */
export function totalsLine({ passed, failed, skipped, credited = 0, note }) {
  const extra = [];
  if (credited > 0) extra.push(`${credited} more ran in the kernel lane`);
  if (note) extra.push(note);
  const tail = extra.length ? ` (${extra.join('; ')})` : '';
  return `${passed} passed, ${failed} failed, ${skipped - credited} skipped${tail}`;
}

/**
 * The skips left once the lane's credit is taken off, counted by reason (the note of `ctx.skip`),
 * most frequent first; a skip that gave none counts under "(no reason given)".
 * `skips` are the skip reporter's entries ({ file, fullName, note }) with a `phase` added.
 */
export function skipReasons(skips, credited) {
  const gone = new Set(credited.map((c) => `${c.phase}\0${c.file}\0${c.fullName}`));
  const counts = new Map();
  for (const s of skips) {
    if (gone.has(`${s.phase}\0${s.file}\0${s.fullName}`)) continue;
    const why = s.todo ? '(todo)' : (s.note ?? '(no reason given)');
    counts.set(why, (counts.get(why) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}
