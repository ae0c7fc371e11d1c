// host-local IPAM as a binary: a drop-in for the Go plugin (same config, same files, same lock),
// with idempotent ADD, GC of stale attachments and STATUS.
import { HostLocalAllocator, pluginMain } from 'cni-kit';

pluginMain({
  about: 'host-local IPAM (cni-kit): allocates addresses from local range sets',
  supportedVersions: ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
  async add(ctx) {
    return new HostLocalAllocator(ctx.config).allocate(ctx);
  },
  async del(ctx) {
    await new HostLocalAllocator(ctx.config).release(ctx);
  },
  async check(ctx) {
    const req = ctx.config.prevResult ? { ...ctx, prevResult: ctx.config.prevResult } : ctx;
    await new HostLocalAllocator(ctx.config).check(req);
  },
  async gc(ctx) {
    await new HostLocalAllocator(ctx.config).gc(ctx.validAttachments);
  },
  async status(ctx) {
    await new HostLocalAllocator(ctx.config).status();
  },
});
