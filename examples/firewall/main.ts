// firewall binary: the plugin logic over the real iptables tools and firewalld (busctl).
import { pluginMain } from 'cni-kit';
import { createFirewallPlugin } from './plugin.js';

pluginMain(createFirewallPlugin());
