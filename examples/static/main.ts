// static IPAM as a binary: echoes configured or requested addresses; CHECK compares with prevResult.
import { pluginMain } from 'cni-kit';
import { ipamPlugin, StaticAllocator } from 'cni-kit/ipam';

pluginMain(
  ipamPlugin((config) => new StaticAllocator(config), {
    about: 'static IPAM (cni-kit): returns the configured addresses',
  }),
);
