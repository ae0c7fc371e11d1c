// Crash-safe file writes: a leaf module tied to no layer (it imports nothing from src/).
export {
  type AtomicWriteAsyncOptions,
  type AtomicWriteOptions,
  createFileExclusiveSync,
  fsyncDir,
  fsyncDirSync,
  writeFileAtomic,
  writeFileAtomicSync,
} from './atomic.js';
