/**
 * The conformance kit as a library: `runConformance()` holds any CNI plugin binary (any language)
 * to the spec in network namespaces of its own and returns a report; the `cni-kit conform`
 * command prints it. Use it from a test suite to keep a plugin conformant.
 *
 * @module cni-kit/conform
 */
export { BY_DESIGN_LEFTOVERS, type NamePatterns } from './allowlist.js';
export { cleanupConformNamespaces, liveConformNamespaces, NETNS_PREFIX } from './netns.js';
export { formatJUnit, formatTable } from './report.js';
export { CHECKS, ConformUsageError, runConformance } from './run.js';
export type { CheckResult, CheckStatus, ConformOptions, ConformReport } from './types.js';
