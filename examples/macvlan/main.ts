// macvlan binary: the plugin logic over the real netlink backend.
import { linuxNetlink, pluginMain } from 'cni-kit';
import { createMacvlanPlugin } from './plugin.js';

pluginMain(createMacvlanPlugin({ netlink: linuxNetlink() }));
