// host-device binary: the plugin logic over the real netlink backend.
import { linuxNetlink, pluginMain } from 'cni-kit';
import { createHostDevicePlugin } from './plugin.js';

pluginMain(createHostDevicePlugin({ netlink: linuxNetlink() }));
