// The dhcp IPAM: the daemon that holds leases in container netns, and the plugin side of its
// protocol. The packet codec, option handling and lease logic stay internal.
import { loadLibc } from '../../sys/libc.js';
import { type DhcpNet, packetNet } from './link.js';

export { type DhcpDaemon, type DhcpDaemonOptions, startDhcpDaemon, stderrLeaseLog } from './daemon.js';
export {
  type Clock,
  DEFAULT_TIMING,
  type LeaseInfo,
  type LeaseLog,
  type LeaseState,
  type LeaseTiming,
  realClock,
} from './lease.js';
export {
  type Destination,
  type DhcpNet,
  type DhcpTransport,
  LinkGoneError,
  packetNet,
  type Received,
} from './link.js';
export { DEFAULT_DHCP_SOCKET, type DhcpIpamConf, dhcpIpamConfig, parseDhcpConfig } from './options.js';
export {
  callDhcpDaemon,
  type DhcpCall,
  type DhcpOp,
  getDhcpDaemon,
  isGoRpcDaemon,
  START_HINT,
} from './wire.js';

/** The host side of the daemon on Linux: AF_PACKET sockets in container netns through the FFI package. */
export async function linuxDhcpNet(): Promise<DhcpNet> {
  return packetNet(await loadLibc());
}
