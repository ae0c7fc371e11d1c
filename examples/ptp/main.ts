// ptp binary: the plugin logic over the real netlink backend.
import { linuxNetlink, pluginMain } from 'cni-kit';
import { createPtpPlugin } from './plugin.js';

pluginMain(createPtpPlugin({ netlink: linuxNetlink() }));
