// dummy binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createDummyPlugin } from './plugin.js';

pluginMain(createDummyPlugin({ netlink: linuxNetlink() }));
