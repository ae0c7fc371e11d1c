// sbr binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createSbrPlugin } from './plugin.js';

pluginMain(createSbrPlugin({ netlink: linuxNetlink() }));
