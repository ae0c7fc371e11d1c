// The report as a text table (the default output) and as JUnit XML (--junit).
import type { ConformReport } from './types.js';

/** The report as a table: check, version, PASS/FAIL/SKIP, detail; a summary line last. */
export function formatTable(r: ConformReport, width = 120): string {
  const rows = r.checks.map((c) => [c.check, c.version ?? '-', c.status.toUpperCase(), c.detail]);
  const head = ['CHECK', 'VERSION', 'RESULT', 'DETAIL'];
  const w = [0, 1, 2].map((i) => Math.max(head[i]!.length, ...rows.map((row) => row[i]!.length)));
  const lead = w[0]! + w[1]! + w[2]! + 6;
  const room = Math.max(30, width - lead);
  const line = (cols: string[]) => {
    const detail = cols[3]!.length > room ? `${cols[3]!.slice(0, room - 1)}…` : cols[3]!;
    return `${cols[0]!.padEnd(w[0]!)}  ${cols[1]!.padEnd(w[1]!)}  ${cols[2]!.padEnd(w[2]!)}  ${detail}`.trimEnd();
  };
  const out = [`${r.plugin} (type ${r.type}, network ${r.network})`];
  out.push(`versions: ${r.versions.join(', ') || 'none'}`);
  const byReason = new Map<string, string[]>();
  for (const n of r.versionsNotTried) byReason.set(n.reason, [...(byReason.get(n.reason) ?? []), n.version]);
  for (const [reason, vs] of byReason) out.push(`not tried: ${vs.join(', ')} (${reason})`);
  out.push('', line(head), ...rows.map(line), '');
  const failed = r.checks.filter((c) => c.status === 'fail');
  if (failed.length) {
    out.push('failures:');
    for (const c of failed) {
      out.push(`  ${c.check}${c.version ? ` @${c.version}` : ''}:`);
      for (const part of c.detail.split('; ')) out.push(`    ${part}`);
    }
    out.push('');
  }
  const tail = r.aborted ? ' (aborted)' : '';
  out.push(
    `${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped in ${(r.durationMs / 1000).toFixed(1)} s${tail}`,
  );
  return out.join('\n');
}

const xml = (s: string): string =>
  s
    // XML 1.0 cannot carry most control characters, even escaped.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');

/** The report as JUnit XML: one testsuite, one testcase per check (classname = version). */
export function formatJUnit(r: ConformReport): string {
  const secs = (ms: number) => (ms / 1000).toFixed(3);
  const cases = r.checks.map((c) => {
    const cls = `conform.${c.version ?? 'global'}`;
    const open = `    <testcase classname="${xml(cls)}" name="${xml(c.check)}" time="${secs(c.durationMs)}"`;
    if (c.status === 'pass') return `${open}/>`;
    if (c.status === 'skip') return `${open}>\n      <skipped message="${xml(c.detail)}"/>\n    </testcase>`;
    return `${open}>\n      <failure message="${xml(c.detail)}">${xml(c.detail)}</failure>\n    </testcase>`;
  });
  const name = `cni-kit conform ${r.type} (${r.plugin})`;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="cni-kit conform" tests="${r.checks.length}" failures="${r.failed}" skipped="${r.skipped}" time="${secs(r.durationMs)}">`,
    `  <testsuite name="${xml(name)}" tests="${r.checks.length}" failures="${r.failed}" errors="0" skipped="${r.skipped}" time="${secs(r.durationMs)}">`,
    ...cases,
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}
