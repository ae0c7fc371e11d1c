import type { ErrorObject, ValidateFunction } from 'ajv';
import { CniError, type ErrorCodeValue } from './errors.js';

// Turns ajv's errors into messages that name the JSON path, the bad value and the fix.
// The fix is the "x-fix" annotation of the failing schema node (see src/spec/schemas/*.json).

type Err = ErrorObject & { parentSchema?: Record<string, unknown> };

/** Renders a JSON pointer as a readable path: `/plugins/0/type` becomes `plugins[0].type`. */
export function pointerToPath(pointer: string, prefix = ''): string {
  let out = prefix;
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (/^\d+$/.test(seg)) out += `[${seg}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

function show(v: unknown): string {
  const s = JSON.stringify(v);
  if (s === undefined) return String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function describe(e: Err, prefix: string): string {
  const fixOf = (schema: unknown) =>
    schema && typeof schema === 'object' ? (schema as Record<string, unknown>)['x-fix'] : undefined;
  const path = pointerToPath(e.instancePath, prefix);
  if (e.keyword === 'required') {
    const prop = String((e.params as { missingProperty: string }).missingProperty);
    const props = e.parentSchema?.properties as Record<string, unknown> | undefined;
    const fix = fixOf(props?.[prop]);
    const where = path ? `${path}.${prop}` : prop;
    return `${where}: missing${fix ? `; ${fix}` : ''}`;
  }
  const fix = fixOf(e.parentSchema);
  const p = e.params as Record<string, unknown>;
  let problem: string;
  switch (e.keyword) {
    case 'type':
      problem = `must be ${p.type === 'object' ? 'an object' : p.type === 'array' ? 'a list' : `a ${String(p.type)}`}`;
      break;
    case 'pattern':
      problem = 'has an invalid format';
      break;
    case 'enum':
      problem = `must be one of ${show(p.allowedValues)}`;
      break;
    case 'minItems':
      problem = `must have at least ${String(p.limit)} item(s)`;
      break;
    case 'minimum':
      problem = `must be >= ${String(p.limit)}`;
      break;
    default:
      problem = e.message ?? 'is invalid';
  }
  return `${path || '(top level)'}: ${show(e.data)} ${problem}${fix ? `; ${fix}` : ''}`;
}

/** Readable messages for a failed validation, most useful first, duplicates removed. */
export function schemaErrorMessages(
  errors: readonly ErrorObject[] | null | undefined,
  prefix = '',
): string[] {
  const list = (errors ?? []) as Err[];
  // An anyOf failure also reports each branch's failure; the anyOf line alone says it better.
  const anyOfPaths = new Set(list.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const kept = list.filter((e) => e.keyword === 'anyOf' || !anyOfPaths.has(e.instancePath));
  return [...new Set(kept.map((e) => describe(e, prefix)))];
}

/** Runs a compiled validator; on failure throws a CniError naming every bad field. */
export function assertValid(
  validate: ValidateFunction,
  data: unknown,
  code: ErrorCodeValue,
  what: string,
  prefix = '',
): void {
  if (validate(data)) return;
  const msgs = schemaErrorMessages(validate.errors, prefix);
  const first = msgs[0] ?? 'invalid';
  const msg = what ? `${what}: ${first}` : first;
  throw new CniError(code, msg, msgs.length > 1 ? msgs.slice(1).join('; ') : undefined);
}
