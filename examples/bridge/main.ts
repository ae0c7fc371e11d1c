// bridge binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createBridgePlugin } from './plugin.js';

pluginMain(createBridgePlugin({ netlink: linuxNetlink() }));
