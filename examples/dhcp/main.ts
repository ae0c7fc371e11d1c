// dhcp IPAM binary: forwards each call to the cni-kit dhcp-daemon over its Unix socket.
import { pluginMain } from 'cni-kit';
import { createDhcpPlugin } from './plugin.js';

pluginMain(createDhcpPlugin());
