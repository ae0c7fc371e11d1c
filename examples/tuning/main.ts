// tuning binary: the plugin logic over the real netlink backend.
import { linuxNetlink, pluginMain } from 'cni-kit';
import { createTuningPlugin } from './plugin.js';

pluginMain(createTuningPlugin({ netlink: linuxNetlink() }));
