// whereabouts-style cluster IPAM as a binary: whereabouts' config keys (range, ipRanges, exclude,
// network_name, enable_overlapping_ranges, datastore ...), a file store for one node and an etcd
// store for a cluster, idempotent ADD per attachment and per pod, GC and STATUS.
import { createWhereaboutsAllocator, type PluginContext, pluginMain } from 'cni-kit';

// One call per process: close the store (etcd connection) as soon as the call is done.
const allocator = (ctx: PluginContext) =>
  createWhereaboutsAllocator(ctx.config, { closeAfterEachCall: true });

pluginMain({
  about: 'whereabouts IPAM (cni-kit): cluster-wide address allocation on a file or etcd store',
  supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
  async add(ctx) {
    return allocator(ctx).allocate(ctx);
  },
  async del(ctx) {
    await allocator(ctx).release(ctx);
  },
  async check(ctx) {
    const req = ctx.config.prevResult ? { ...ctx, prevResult: ctx.config.prevResult } : ctx;
    await allocator(ctx).check(req);
  },
  async gc(ctx) {
    await allocator(ctx).gc(ctx.validAttachments);
  },
  async status(ctx) {
    await allocator(ctx).status();
  },
});
