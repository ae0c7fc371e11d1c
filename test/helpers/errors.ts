// Capturing the CniError a call throws, for assertions on its code, message and details.
import { CniError } from 'cni-kit';
import { expect } from 'vitest';

/** Runs `fn`, asserts it throws a CniError and returns it; fails the test when nothing is thrown. */
export function cniErrorOf(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a CniError');
}

/** Awaits `p`, asserts it rejects with a CniError and returns it; fails the test when it resolves. */
export async function cniRejectionOf(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a rejection with a CniError');
}
