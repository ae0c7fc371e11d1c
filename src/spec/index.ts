// Public API of src/spec: pure data (types, parsing, validation, conversion); no I/O.

export * from './args.js';
export * from './config.js';
export * from './errors.js';
export * from './identifiers.js';
export {
  convertResult,
  isIPv4Address,
  parseResult,
  toCurrentResult,
  validateResult,
} from './result/convert.js';
export type * from './result/types.js';
export * from './runtime-config.js';
export { pointerToPath, schemaErrorMessages } from './validate.js';
export * from './version.js';
