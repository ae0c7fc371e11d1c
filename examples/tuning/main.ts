// tuning binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createTuningPlugin } from './plugin.js';

pluginMain(createTuningPlugin({ netlink: linuxNetlink() }));
