// host-local IPAM as a binary: a drop-in for the Go plugin (same config, same files, same lock),
// with idempotent ADD, GC of stale attachments and STATUS.
import { pluginMain } from 'cni-kit';
import { HostLocalAllocator, ipamPlugin } from 'cni-kit/ipam';

pluginMain(
  ipamPlugin((config) => new HostLocalAllocator(config), {
    about: 'host-local IPAM (cni-kit): allocates addresses from local range sets',
  }),
);
