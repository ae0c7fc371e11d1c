// The one config-schema mechanism of the SDK: a small builder in the spirit of zod, with the
// TypeScript type of a parsed config inferred from its schema. Every config reader (plugin
// configs, IPAM blocks, the multus config, the pod selection annotation, the NetConf envelope and
// results) is a schema, so every message about bad input is built here, in one format:
//
//   <path>: <value> <problem>[; <fix>]        e.g. `ipam.ranges[0][1].subnet: "10.1/8" must be a CIDR; use "10.1.0.0/16"`
//   <path>: missing[; <fix>]
//
// Rules the Go plugins follow and so do we: JSON `null` means "not set"; unknown fields are kept
// (objects pass them through untouched, the spec requires it); a field is checked only when set.
// Every problem of one value is collected: the first becomes the CniError's message, the others
// its details. A thrown CniError inside `custom`/`transform` becomes one of those problems.
// One file past ~400 lines on purpose: the schema classes share the problem collector and the
// message format, which stay private to it.
import { type IPFamily, tryParseIP } from './addr.js';
import { CniError, ErrorCode, type ErrorCodeValue } from './errors.js';

/** One thing wrong with a value: where, what and how to fix it. */
export interface SchemaIssue {
  path: string;
  /** The whole line, e.g. `mtu: 70000 must be an integer from 68 to 65535`. */
  message: string;
  /** More about it (a CniError's details thrown by a custom check). */
  details?: string;
}

/** What `parse` needs besides the value. */
export interface ParseOptions {
  /** Path prefix of the value, e.g. "ipam"; default: the top level. */
  path?: string | undefined;
  /** Code of the thrown CniError; default 7 (invalid network config). */
  code?: ErrorCodeValue | undefined;
  /** Prepended to the message, e.g. "invalid network config". */
  label?: string | undefined;
}

class Issues {
  readonly list: SchemaIssue[] = [];
  add(path: string, message: string, details?: string): typeof INVALID {
    this.list.push(details ? { path, message, details } : { path, message });
    return INVALID;
  }
}

const INVALID: unique symbol = Symbol('invalid');
type Parsed<T> = T | typeof INVALID;

/** Short JSON of a bad value for a message (long values are cut). */
export function showValue(v: unknown): string {
  const s = typeof v === 'bigint' ? `${v}` : JSON.stringify(v);
  if (s === undefined) return String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** Joins a path and a key the way messages print them: `a.b`, `a[0]`, `a["x.y"]`. */
export function joinPath(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  if (/^[A-Za-z_$][\w$-]*$/.test(key)) return path ? `${path}.${key}` : key;
  return `${path}[${JSON.stringify(key)}]`;
}

function line(path: string, value: unknown, problem: string, fix: string | undefined): string {
  return `${path || '(top level)'}: ${showValue(value)} ${problem}${fix ? `; ${fix}` : ''}`;
}

/** The type a schema produces. */
export type Infer<S> = S extends Schema<infer T> ? T : never;

/** What a schema does besides its check: the unset rule and the fix text. */
interface Traits<T> {
  /** What an unset value parses as (a default, or undefined when optional); absent: "missing". */
  unset?: { value: () => T };
  /** The fix printed after a problem. */
  hint?: string;
  /** "" counts as unset when the value is optional or has a default (Go's zero-value strings). */
  blank?: boolean;
}

type Check<T> = (value: unknown, path: string, issues: Issues, hint: string | undefined) => Parsed<T>;

/**
 * A value checker and converter. Build one with the `conf` functions; `parse` throws a CniError
 * naming every bad field. Modifiers return new schemas (schemas are immutable and reusable).
 */
export class Schema<T> {
  /** @internal */
  constructor(
    /** @internal checks a set value; `hint` is the schema's fix text */
    readonly check: Check<T>,
    /** @internal */
    readonly traits: Traits<T> = {},
  ) {}

  /** Sets the fix printed after a problem with this value ("use a name such as cni0"). */
  fix(text: string): Schema<T> {
    return new Schema(this.check, { ...this.traits, hint: text });
  }

  /** Makes the value optional: unset (absent, null, and "" for strings) parses as undefined. */
  optional(): Schema<T | undefined> {
    return new Schema<T | undefined>(this.check, { ...this.traits, unset: { value: () => undefined } });
  }

  /** Uses `value` when unset (absent, null, and "" for strings). */
  default(value: T | (() => T)): Schema<T> {
    const get = typeof value === 'function' ? (value as () => T) : () => value;
    return new Schema(this.check, { ...this.traits, unset: { value: get } });
  }

  /** Adds a check on the parsed value: return a problem ("must be even") or undefined. */
  refine(test: (value: T) => string | undefined, fix?: string): Schema<T> {
    const check = this.check;
    return new Schema<T>((v, path, issues, hint) => {
      const out = check(v, path, issues, hint);
      if (out === INVALID) return out;
      const problem = test(out);
      return problem === undefined ? out : issues.add(path, line(path, v, problem, fix ?? hint));
    }, this.traits);
  }

  /** Converts the parsed value; `fn` may throw a CniError, whose message becomes the problem. */
  transform<U>(fn: (value: T, path: string) => U): Schema<U> {
    const check = this.check;
    const { unset, ...rest } = this.traits;
    return new Schema<U>(
      (v, path, issues, hint) => {
        const out = check(v, path, issues, hint);
        return out === INVALID ? INVALID : guarded(() => fn(out, path), path, issues);
      },
      unset ? { ...rest, unset: { value: () => fn(unset.value(), '') } } : rest,
    );
  }

  /** @internal parses one value at `path`, recording problems. */
  run(value: unknown, path: string, issues: Issues): Parsed<T> {
    const { unset, hint, blank } = this.traits;
    if (value === undefined || value === null || (value === '' && blank && unset)) {
      if (unset) return unset.value();
      return issues.add(path, `${path || '(top level)'}: missing${hint ? `; ${hint}` : ''}`);
    }
    return this.check(value, path, issues, hint);
  }

  /** Parses `value`; throws a CniError (code 7 unless told) naming every problem. */
  parse(value: unknown, opts: ParseOptions = {}): T {
    const issues = new Issues();
    const out = this.run(value, opts.path ?? '', issues);
    if (out === INVALID || issues.list.length > 0) {
      throw schemaError(issues.list, opts.code ?? ErrorCode.InvalidNetworkConfig, opts.label);
    }
    return out;
  }

  /** Parses `value`; returns the problems instead of throwing. */
  safeParse(value: unknown, path = ''): { ok: true; value: T } | { ok: false; issues: SchemaIssue[] } {
    const issues = new Issues();
    const out = this.run(value, path, issues);
    if (out === INVALID || issues.list.length > 0) return { ok: false, issues: issues.list };
    return { ok: true, value: out };
  }
}

function guarded<U>(fn: () => U, path: string, issues: Issues): Parsed<U> {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CniError) return issues.add(path, err.message, err.details);
    throw err;
  }
}

/** The CniError for a list of problems: the first is the message, the rest the details. */
export function schemaError(issues: readonly SchemaIssue[], code: ErrorCodeValue, label?: string): CniError {
  const msgs = [...new Set(issues.map((i) => i.message))];
  const first = msgs[0] ?? 'invalid';
  const details = [issues[0]?.details, ...msgs.slice(1)].filter(Boolean).join('; ');
  return new CniError(code, label ? `${label}: ${first}` : first, details || undefined);
}

/** A leaf schema from a test: returns the value (possibly converted) or a problem string. */
function leaf<T>(test: (v: unknown) => { ok: T } | { problem: string }, traits: Traits<T> = {}): Schema<T> {
  return new Schema<T>((v, path, issues, fix) => {
    const r = test(v);
    return 'ok' in r ? r.ok : issues.add(path, line(path, v, r.problem, fix));
  }, traits);
}

/** A number leaf: `kind` names it in messages ("an integer"), `ok` tests it, bounds are inclusive. */
function numeric(kind: string, ok: (v: number) => boolean, min?: number, max?: number): Schema<number> {
  const range =
    min !== undefined && max !== undefined
      ? `${kind} from ${min} to ${max}`
      : min !== undefined
        ? `${kind} >= ${min}`
        : max !== undefined
          ? `${kind} <= ${max}`
          : kind;
  return leaf<number>((v) =>
    typeof v === 'number' && ok(v) && (min === undefined || v >= min) && (max === undefined || v <= max)
      ? { ok: v }
      : { problem: `must be ${range}` },
  );
}

/** Traits of string leaves: "" is unset when optional. */
const TEXT = { blank: true } as const;

/** A string schema with length and pattern checks. */
export class StringSchema extends Schema<string> {
  /** @internal */
  constructor(
    private readonly rules: ReadonlyArray<(s: string) => string | undefined> = [],
    hint?: string,
  ) {
    super(
      (v, path, issues, fix) => {
        if (typeof v !== 'string') return issues.add(path, line(path, v, 'must be a string', fix));
        for (const rule of rules) {
          const problem = rule(v);
          if (problem !== undefined) return issues.add(path, line(path, v, problem, fix));
        }
        return v;
      },
      hint === undefined ? TEXT : { ...TEXT, hint },
    );
  }
  private with(rule: (s: string) => string | undefined): StringSchema {
    return new StringSchema([...this.rules, rule], this.traits.hint);
  }
  override fix(text: string): StringSchema {
    return new StringSchema(this.rules, text);
  }
  /** At least `n` characters (1: not empty). */
  min(n: number): StringSchema {
    return this.with((s) =>
      s.length < n ? (n === 1 ? 'must not be empty' : `must have at least ${n} characters`) : undefined,
    );
  }
  /** At most `n` bytes (interface and bridge names are limited in bytes). */
  max(n: number): StringSchema {
    return this.with((s) => (Buffer.byteLength(s) > n ? `is longer than ${n} characters` : undefined));
  }
  /** Must match `re`; `problem` says what is wrong otherwise. */
  pattern(re: RegExp, problem = 'has an invalid format'): StringSchema {
    return this.with((s) => (re.test(s) ? undefined : problem));
  }
}

/** The fields of an object schema: `conf.object(shape)`. */
export type Shape = Record<string, Schema<unknown>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
type OptionalKeys<S extends Shape> = { [K in keyof S]: undefined extends Infer<S[K]> ? K : never }[keyof S];
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>;
/** The object type of a shape: fields whose schema may give undefined are optional. */
export type InferShape<S extends Shape> = Simplify<
  { [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Exclude<Infer<S[K]>, undefined> }
>;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** An object schema; fields not in the shape are kept as they are. */
export class ObjectSchema<S extends Shape> extends Schema<InferShape<S>> {
  /** @internal */
  constructor(
    readonly shape: S,
    hint?: string,
  ) {
    super(
      (v, path, issues, fix) => {
        if (!isPlainObject(v)) return issues.add(path, line(path, v, 'must be an object', fix));
        const out: Record<string, unknown> = { ...v };
        let bad = false;
        for (const [key, schema] of Object.entries(shape)) {
          const r = schema.run(v[key], joinPath(path, key), issues);
          if (r === INVALID) bad = true;
          else if (r === undefined) delete out[key];
          else out[key] = r;
        }
        return bad ? INVALID : (out as InferShape<S>);
      },
      hint === undefined ? {} : { hint },
    );
  }
  override fix(text: string): ObjectSchema<S> {
    return new ObjectSchema(this.shape, text);
  }
  /** A schema with more (or replaced) fields. */
  extend<E extends Shape>(more: E): ObjectSchema<Omit<S, keyof E> & E> {
    return new ObjectSchema({ ...this.shape, ...more } as Omit<S, keyof E> & E, this.traits.hint);
  }
}

/** An array schema. */
export class ArraySchema<T> extends Schema<T[]> {
  /** @internal */
  constructor(
    readonly item: Schema<T>,
    private readonly bounds: { min?: number; max?: number } = {},
    hint?: string,
  ) {
    super(
      (v, path, issues, fix) => {
        if (!Array.isArray(v)) return issues.add(path, line(path, v, 'must be a list', fix));
        const { min, max } = bounds;
        if (min !== undefined && v.length < min)
          return issues.add(path, line(path, v, `must have at least ${min} item(s)`, fix));
        if (max !== undefined && v.length > max)
          return issues.add(path, line(path, v, `must have at most ${max} item(s)`, fix));
        const out: T[] = [];
        let bad = false;
        v.forEach((x, i) => {
          const r = item.run(x, joinPath(path, i), issues);
          if (r === INVALID) bad = true;
          else out.push(r);
        });
        return bad ? INVALID : out;
      },
      hint === undefined ? {} : { hint },
    );
  }
  override fix(text: string): ArraySchema<T> {
    return new ArraySchema(this.item, this.bounds, text);
  }
  /** At least `n` items. */
  min(n: number): ArraySchema<T> {
    return new ArraySchema(this.item, { ...this.bounds, min: n }, this.traits.hint);
  }
  /** At most `n` items. */
  max(n: number): ArraySchema<T> {
    return new ArraySchema(this.item, { ...this.bounds, max: n }, this.traits.hint);
  }
}

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

function family(f: IPFamily | undefined): string {
  return f ? `an IPv${f}` : 'an IP';
}

/** The schema builder: `conf.object({ bridge: conf.string().max(15).default('cni0') })`. */
export const conf = {
  /** Any string; chain `.min`, `.max`, `.pattern`. */
  string(): StringSchema {
    return new StringSchema();
  },
  /** An integer, optionally bounded (inclusive). */
  int(min?: number, max?: number): Schema<number> {
    return numeric('an integer', Number.isInteger, min, max);
  },
  /** A finite number, optionally bounded (inclusive). */
  number(min?: number, max?: number): Schema<number> {
    return numeric('a number', Number.isFinite, min, max);
  },
  /** A JSON boolean. */
  bool(): Schema<boolean> {
    return leaf<boolean>((v) => (typeof v === 'boolean' ? { ok: v } : { problem: 'must be a boolean' }), {
      hint: 'use true or false',
    });
  },
  /** A boolean, or the strings "true"/"false" in any case (what libcni accepts for list flags). */
  boolish(): Schema<boolean> {
    return leaf<boolean>(
      (v) => {
        if (typeof v === 'boolean') return { ok: v };
        if (typeof v === 'string' && /^(true|false)$/i.test(v)) return { ok: v.toLowerCase() === 'true' };
        return { problem: 'must be a boolean' };
      },
      { hint: 'use true or false (the strings "true" and "false" are read too)' },
    );
  },
  /** One of the given strings. */
  enum<const V extends string>(values: readonly V[]): Schema<V> {
    return leaf<V>(
      (v) =>
        typeof v === 'string' && (values as readonly string[]).includes(v)
          ? { ok: v as V }
          : { problem: `must be one of ${values.map((x) => JSON.stringify(x)).join(', ')}` },
      TEXT,
    );
  },
  /** A list of `item`. */
  array<T>(item: Schema<T>): ArraySchema<T> {
    return new ArraySchema(item);
  },
  /** An object with the given fields; other fields are kept. */
  object<S extends Shape>(shape: S): ObjectSchema<S> {
    return new ObjectSchema(shape);
  },
  /** An object whose every value matches `value` (e.g. capabilities: name → boolean). */
  record<T>(value: Schema<T>): Schema<Record<string, T>> {
    return new Schema<Record<string, T>>((v, path, issues, fix) => {
      if (!isPlainObject(v)) return issues.add(path, line(path, v, 'must be an object', fix));
      const out: Record<string, T> = {};
      let bad = false;
      for (const [k, x] of Object.entries(v)) {
        const r = value.run(x, joinPath(path, k), issues);
        if (r === INVALID) bad = true;
        else out[k] = r;
      }
      return bad ? INVALID : out;
    });
  },
  /** Any JSON object, unchecked inside. */
  json(): Schema<Record<string, unknown>> {
    return leaf<Record<string, unknown>>((v) =>
      isPlainObject(v) ? { ok: v } : { problem: 'must be an object' },
    );
  },
  /** Any set value, unchecked. */
  unknown(): Schema<unknown> {
    return leaf<unknown>((v) => ({ ok: v }));
  },
  /** An IP address ("10.1.2.3", "2001:db8::3"), optionally of one family; parses as the text given. */
  ip(only?: IPFamily): Schema<string> {
    return leaf<string>((v) => {
      const ip = typeof v === 'string' ? tryParseIP(v.trim()) : undefined;
      if (ip && (only === undefined || ip.family === only)) return { ok: v as string };
      const hint = typeof v === 'string' && v.includes('/') ? '; drop the "/prefix"' : '';
      return { problem: `is not ${family(only)} address; use e.g. "10.1.2.3" or "2001:db8::3"${hint}` };
    }, TEXT);
  },
  /** An address with a prefix length ("10.1.2.3/24"); host bits allowed. */
  cidr(): Schema<string> {
    return leaf<string>((v) => {
      if (typeof v === 'string') {
        const slash = v.indexOf('/');
        const ip = slash > 0 ? tryParseIP(v.slice(0, slash)) : undefined;
        const len = v.slice(slash + 1);
        if (ip && /^\d{1,3}$/.test(len) && Number(len) <= (ip.family === 4 ? 32 : 128)) return { ok: v };
      }
      return {
        problem: 'is not in CIDR notation; use "address/prefix" such as "10.1.2.3/24" or "2001:db8::3/64"',
      };
    }, TEXT);
  },
  /** A unicast MAC address ("c2:11:22:33:44:55"), lower-cased. */
  mac(): Schema<string> {
    return leaf<string>((v) => {
      if (typeof v !== 'string' || !MAC_RE.test(v))
        return { problem: 'must be a MAC address like "c2:11:22:33:44:55"' };
      if (Number.parseInt(v.slice(0, 2), 16) & 1)
        return { problem: 'is a multicast MAC; clear the lowest bit of the first octet' };
      return { ok: v.toLowerCase() };
    }, TEXT);
  },
  /** An interface name: 1–15 bytes, not "." or "..", no '/', ':' or whitespace. */
  ifname(): StringSchema {
    return new StringSchema([
      (s) => (s === '' ? 'must not be empty' : undefined),
      (s) => (Buffer.byteLength(s) > 15 ? 'is longer than 15 characters' : undefined),
      (s) =>
        s === '.' || s === '..' || /[/:\s]/u.test(s)
          ? "is not an interface name (no '/', ':' or whitespace)"
          : undefined,
    ]);
  },
  /**
   * A hand-written check, for what the builder cannot say: `fn` gets the set value and its path,
   * returns the parsed value and throws a CniError (its message is used as is) when it is bad.
   */
  custom<T>(fn: (value: unknown, path: string) => T): Schema<T> {
    return new Schema<T>((v, path, issues) => guarded(() => fn(v, path), path, issues));
  },
  /** The first of `options` that accepts the value; otherwise `problem` ("is not an IP address or CIDR"). */
  union<const O extends ReadonlyArray<Schema<unknown>>>(
    options: O,
    problem: string,
  ): Schema<Infer<O[number]>> {
    return new Schema<Infer<O[number]>>((v, path, issues, fix) => {
      for (const s of options) {
        const trial = new Issues();
        const r = s.run(v, path, trial);
        if (r !== INVALID && trial.list.length === 0) return r as Infer<O[number]>;
      }
      return issues.add(path, line(path, v, problem, fix));
    });
  },
};
