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
  try {
    return packetNet(await loadLibc());
  } catch (e) {
    // The daemon has no iproute2 fallback: it needs setns(2) and packet sockets in-process.
    throw new Error(
      `the dhcp daemon needs the FFI package koffi (setns and AF_PACKET sockets) and it cannot load: ${(e as Error).message}; install cni-kit with its dependencies on a platform koffi ships a binary for`,
      { cause: e },
    );
  }
}
