// portmap binary: the plugin logic over the real netlink backend and firewall tools.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createPortmapPlugin } from './plugin.js';

pluginMain(createPortmapPlugin({ netlink: linuxNetlink() }));
