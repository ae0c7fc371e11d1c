// loopback binary: the plugin logic over the real netlink backend.
import { linuxNetlink, pluginMain } from 'cni-kit';
import { createLoopbackPlugin } from './plugin.js';

pluginMain(createLoopbackPlugin({ netlink: linuxNetlink() }));
