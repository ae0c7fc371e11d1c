// vrf binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createVrfPlugin } from './plugin.js';

pluginMain(createVrfPlugin({ netlink: linuxNetlink() }));
