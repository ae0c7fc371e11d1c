// multus (thin mode) binary: see docs/multus.md for the configuration.
import { pluginMain } from 'cni-kit';
import { multusPlugin } from './plugin.js';

pluginMain(multusPlugin());
