// How a call is judged: the wording shared by every check's detail.
import type { Call } from './context.js';
import { fail } from './context.js';
import { brief, describeExit } from './proc.js';
import { checkErrorJson, isObj } from './validate.js';

/** What a failed call said: the error's msg, else its stdout, else its stderr. */
export function said(call: Call): string {
  if (isObj(call.json) && typeof call.json.msg === 'string') {
    const code = typeof call.json.code === 'number' ? `code ${call.json.code}: ` : '';
    return `${code}${brief(call.json.msg, 120)}`;
  }
  return brief(call.stdout || call.stderr || '(no output)', 120);
}

export function expectQuietSuccess(call: Call, what: string): string {
  if (call.exitCode !== 0) throw fail(`${what}: ${describeExit(call)}: ${said(call)}`);
  if (call.stdout.trim()) {
    throw fail(
      `${what} exited 0 but printed ${JSON.stringify(brief(call.stdout, 80))}; the spec defines no output`,
    );
  }
  return 'exit 0, no output';
}

export function expectError(call: Call, code: number): string {
  if (call.exitCode === 0) {
    throw fail(
      `exit status 0 (stdout ${JSON.stringify(brief(call.stdout, 80))}); an error must exit non-zero`,
    );
  }
  if (call.exitCode === null) throw fail(describeExit(call));
  if (call.jsonError !== undefined) throw fail(`${call.jsonError} (${describeExit(call)})`);
  const problems = checkErrorJson(call.json ?? null);
  if (problems.length) throw fail(`error JSON: ${problems.join('; ')}`);
  const e = call.json as { code: number; msg: string };
  if (e.code !== code) throw fail(`code ${e.code} (${brief(e.msg, 100)}), want ${code}`);
  return `code ${code}: ${brief(e.msg, 100)}`;
}

export function leftoverDetail(problems: string[]): string {
  const shown = problems.slice(0, 6).join('; ');
  return problems.length > 6 ? `${shown}; and ${problems.length - 6} more` : shown;
}
