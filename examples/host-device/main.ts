// host-device binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createHostDevicePlugin } from './plugin.js';

pluginMain(createHostDevicePlugin({ netlink: linuxNetlink() }));
