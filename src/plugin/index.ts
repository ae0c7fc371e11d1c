// Public API of src/plugin: the skel (process edge) and the pure call runner behind it.
export type {
  GcContext,
  PluginCommand,
  PluginContext,
  PluginHandlers,
  PluginOptions,
  PluginSpec,
} from './context.js';
export * from './fs.js';
export { pluginMain } from './main.js';
export { DEFAULT_SUPPORTED_VERSIONS, type PluginInput, type PluginOutcome, runPlugin } from './run.js';
