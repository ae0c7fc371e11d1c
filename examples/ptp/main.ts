// ptp binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createPtpPlugin } from './plugin.js';

pluginMain(createPtpPlugin({ netlink: linuxNetlink() }));
