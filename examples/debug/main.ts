// debug as a binary: see ./plugin.ts for its config fields.
import { pluginMain } from 'cni-kit';
import { debugPlugin } from './plugin.js';

pluginMain(debugPlugin());
