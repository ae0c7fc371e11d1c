// Option parsing shared by the CLI verbs, on node:util's parseArgs.
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** One CLI verb: its help text and what it runs. */
export interface Verb {
  readonly help: string;
  run(argv: string[]): Promise<number>;
}

/** A usage mistake: the CLI prints it with the verb's help and exits 2. */
export class CliUsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

/** parseArgs with strict checking, turning its errors into usage errors. */
export function parseVerbArgs<O extends Options>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new CliUsageError(e instanceof Error ? e.message : String(e));
  }
}
