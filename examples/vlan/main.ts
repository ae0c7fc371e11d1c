// vlan binary: the plugin logic over the real netlink backend.
import { linuxNetlink, pluginMain } from 'cni-kit';
import { createVlanPlugin } from './plugin.js';

pluginMain(createVlanPlugin({ netlink: linuxNetlink() }));
