// tap binary: the plugin logic over the real netlink backend.
import { pluginMain } from 'cni-kit';
import { linuxNetlink } from 'cni-kit/netlink';
import { createTapPlugin } from './plugin.js';
import { labeledTapCreator } from './selinux.js';

pluginMain(createTapPlugin({ netlink: linuxNetlink(), createLabeledTap: labeledTapCreator() }));
