// Public API of src/spec: pure data (types, parsing, validation, conversion); no I/O.
export * from './errors.js';
export * from './version.js';
export type * from './result/types.js';
