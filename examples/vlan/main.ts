// vlan binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createVlanPlugin } from './plugin.js';

pluginMain(createVlanPlugin({ netlink: linuxNetlink() }));
