// ipvlan binary: the plugin logic over the real netlink backend.
import { linuxNetlink, pluginMain } from 'cni-kit';
import { createIpvlanPlugin } from './plugin.js';

pluginMain(createIpvlanPlugin({ netlink: linuxNetlink() }));
