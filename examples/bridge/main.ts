// bridge binary: the plugin logic over the real netlink backend.
import { linuxNetlink, pluginMain } from 'cni-kit';
import { createBridgePlugin } from './plugin.js';

pluginMain(createBridgePlugin({ netlink: linuxNetlink() }));
