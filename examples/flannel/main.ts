// flannel binary: see docs/multus.md ("flannel") for the configuration.
import { pluginMain } from 'cni-kit';
import { flannelPlugin } from './plugin.js';

pluginMain(flannelPlugin());
