// bandwidth binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createBandwidthPlugin } from './plugin.js';

pluginMain(createBandwidthPlugin({ netlink: linuxNetlink() }));
