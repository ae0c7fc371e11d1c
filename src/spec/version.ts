import { CniError, ErrorCode } from './errors.js';

/** Every CNI spec version, oldest first. */
export const ALL_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

/** A CNI spec version this SDK knows. */
export type SpecVersion = (typeof ALL_VERSIONS)[number];

/** The newest spec version; results inside the SDK are always of this version's type. */
export const CURRENT_VERSION: SpecVersion = '1.1.0';

/** The result-type family a version belongs to: 0.1/0.2, 0.3/0.4, or 1.x. */
export type ResultFamily = '0.2' | '0.4' | '1.x';

/** A parsed version triple. */
export interface VersionTriple {
  major: number;
  minor: number;
  micro: number;
}

/**
 * Parses a version like Go's `version.ParseVersion`: "" is 0.1.0, "1" is 1.0.0, "1.1" is 1.1.0;
 * non-numeric parts and four or more parts are refused.
 */
export function parseVersion(v: string): VersionTriple {
  const s = v === '' ? '0.1.0' : v;
  const parts = s.split('.');
  if (parts.length > 3) {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `invalid version "${v}": too many parts; use MAJOR.MINOR.MICRO`,
    );
  }
  const nums = parts.map((p) => {
    if (!/^\d+$/.test(p)) {
      throw new CniError(
        ErrorCode.DecodingFailure,
        `invalid version "${v}": "${p}" is not a number; use MAJOR.MINOR.MICRO`,
      );
    }
    return Number(p);
  });
  return { major: nums[0] ?? 0, minor: nums[1] ?? 0, micro: nums[2] ?? 0 };
}

/** Compares two version strings numerically: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  return x.major - y.major || x.minor - y.minor || x.micro - y.micro;
}

/** True when `v` is at least `min` (numerically). */
export function versionAtLeast(v: string, min: string): boolean {
  return compareVersions(v, min) >= 0;
}

/** True when `v` is exactly one of the seven spec versions. */
export function isSpecVersion(v: unknown): v is SpecVersion {
  return typeof v === 'string' && (ALL_VERSIONS as readonly string[]).includes(v);
}

/** Canonical form of a known version ("" and "0.1" become "0.1.0"), or undefined when unknown. */
export function normalizeVersion(v: string | undefined): SpecVersion | undefined {
  try {
    const t = parseVersion(v ?? '');
    const s = `${t.major}.${t.minor}.${t.micro}`;
    return isSpecVersion(s) ? s : undefined;
  } catch {
    return undefined;
  }
}

/** The result family of a known version. */
export function resultFamily(v: SpecVersion): ResultFamily {
  if (v === '0.1.0' || v === '0.2.0') return '0.2';
  if (v === '1.0.0' || v === '1.1.0') return '1.x';
  return '0.4';
}

/** Versions from `min` on (inclusive), like Go's `VersionsStartingFrom`. */
export function versionsFrom(min: SpecVersion): SpecVersion[] {
  return ALL_VERSIONS.filter((v) => versionAtLeast(v, min));
}

/**
 * The 1.1 "cniVersions" rule: the highest version offered that the other side also supports,
 * or undefined when there is none.
 */
export function pickVersion(offered: readonly string[], supported: readonly string[]): string | undefined {
  let best: string | undefined;
  for (const v of offered) {
    if (!supported.includes(v)) continue;
    try {
      if (best === undefined || compareVersions(v, best) > 0) best = v;
    } catch {
      // an unparsable entry can never be the best one
    }
  }
  return best;
}
