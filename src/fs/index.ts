/**
 * Crash-safe file writes: a leaf module tied to no layer (it imports nothing from src/).
 *
 * @module cni-kit/fs
 */
export {
  type AtomicWriteAsyncOptions,
  type AtomicWriteOptions,
  boundedFileName,
  createFileExclusiveSync,
  fsyncDir,
  fsyncDirSync,
  MAX_FILE_NAME,
  processAlive,
  removeStaleTempFiles,
  type StaleTempOptions,
  SyncBatch,
  tempFileWriter,
  writeFileAtomic,
  writeFileAtomicSync,
} from './atomic.js';
