/**
 * Crash-safe file writes: a leaf module tied to no layer (it imports nothing from src/).
 *
 * @module cni-kit/fs
 */
export {
  type AtomicWriteAsyncOptions,
  type AtomicWriteOptions,
  createFileExclusiveSync,
  fsyncDir,
  fsyncDirSync,
  writeFileAtomic,
  writeFileAtomicSync,
} from './atomic.js';
