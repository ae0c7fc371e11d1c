// static IPAM as a binary: echoes configured or requested addresses; CHECK compares with prevResult.
import { pluginMain, StaticAllocator } from 'cni-kit';

pluginMain({
  about: 'static IPAM (cni-kit): returns the configured addresses',
  supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
  async add(ctx) {
    return new StaticAllocator(ctx.config).allocate(ctx);
  },
  async del() {},
  async check(ctx) {
    const req = ctx.config.prevResult ? { ...ctx, prevResult: ctx.config.prevResult } : ctx;
    await new StaticAllocator(ctx.config).check(req);
  },
});
