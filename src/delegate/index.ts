// Public API of src/delegate: find and run other plugins, and the libcni-equivalent runtime.
export * from './cache.js';
export * from './conf-files.js';
export * from './env.js';
export * from './exec.js';
export * from './find.js';
export * from './invoke.js';
export * from './runtime.js';
export * from './version-info.js';
