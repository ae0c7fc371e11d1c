// loopback binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createLoopbackPlugin } from './plugin.js';

pluginMain(createLoopbackPlugin({ netlink: linuxNetlink() }));
