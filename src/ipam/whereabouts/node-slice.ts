// Node slices (whereabouts' "Fast IPAM", `node_slice_size`): a range is cut into equal slices, a
// controller hands each node one (the NodeSlicePool object, whereabouts.cni.cncf.io/v1alpha1), and
// a node allocates only inside its slice, from an IPPool of its own: nodes never write the same
// object, so they never contend. These are the pure parts: slicing, assignment, the per-node range.
// Unlike whereabouts, slices work for IPv6 too (bigint math), and `exclude` and `gateway` still
// apply inside a slice (whereabouts drops `exclude` in this mode, wa#666).
import { familyBits, formatSubnet, type Subnet, subnetBroadcast } from '../../spec/addr.js';
import type { Interval, WhereaboutsRange } from './config.js';
import type { NodeSliceAllocation } from './store.js';

export { MAX_SLICES, parseSliceSize } from './config.js';
// The object shapes live with the store interface (store.ts), which reads and writes them.
export type { NodeSliceAllocation, NodeSlicePool } from './store.js';

/** The slices of `subnet` of prefix `size`, in address order, as CIDR strings. */
export function divideRange(subnet: Subnet, size: number): string[] {
  const bits = familyBits(subnet.family);
  const count = 1n << BigInt(size - subnet.prefix);
  const step = 1n << BigInt(bits - size);
  const out: string[] = [];
  for (let i = 0n; i < count; i++) {
    out.push(formatSubnet({ family: subnet.family, network: subnet.network + i * step, prefix: size }));
  }
  return out;
}

/**
 * Assigns slices to nodes: a node keeps the slice it has, slices of nodes that are gone become
 * free, and each node without one takes the first free slice (nodes in name order, so the result
 * does not depend on listing order). Nodes left over when slices run out get none.
 */
export function assignSlices(
  current: readonly NodeSliceAllocation[],
  nodes: readonly string[],
): NodeSliceAllocation[] {
  const live = new Set(nodes);
  const out = current.map((a) => ({
    sliceRange: a.sliceRange,
    nodeName: live.has(a.nodeName) ? a.nodeName : '',
  }));
  const seen = new Set<string>();
  for (const a of out) {
    // A node listed twice (a hand edit) keeps its first slice only.
    if (a.nodeName !== '' && seen.has(a.nodeName)) a.nodeName = '';
    else if (a.nodeName !== '') seen.add(a.nodeName);
  }
  let free = 0;
  for (const node of [...live].sort()) {
    if (seen.has(node)) continue;
    while (free < out.length && out[free]!.nodeName !== '') free++;
    if (free >= out.length) break;
    out[free]!.nodeName = node;
    seen.add(node);
  }
  return out;
}

/**
 * The range a node allocates from: the slice's usable addresses (its network and last address are
 * never handed out, as in whereabouts) that the configured range allows, in an IPPool named
 * `[<network_name>-]<node>-<slice>` whose range is the slice and whose offsets count from the
 * slice's network address, as whereabouts writes it.
 */
export function sliceRange(
  parent: WhereaboutsRange,
  slice: Subnet,
  node: string,
  networkName: string,
): WhereaboutsRange {
  const lo = slice.network + 1n;
  const hi = subnetBroadcast(slice).value - 1n;
  const segments: Interval[] = [];
  for (const s of parent.segments) {
    const a = s.lo > lo ? s.lo : lo;
    const b = s.hi < hi ? s.hi : hi;
    if (a <= b) segments.push({ lo: a, hi: b });
  }
  let capacity = 0n;
  for (const s of segments) capacity += s.hi - s.lo + 1n;
  // whereabouts' normalisation of a range into a name: "/" and ":" become "-".
  let base = formatSubnet(slice).replace(/[/:]/g, '-');
  if (base.startsWith('-')) base = `0${base}`;
  const pool = networkName ? `${networkName}-${node}-${base}` : `${node}-${base}`;
  return {
    ...parent,
    // Addresses keep the whole range's prefix in the result (one L2 network across nodes), as in
    // whereabouts; only the pool (name, range, offsets) is the slice's.
    first: segments[0]?.lo ?? lo,
    last: segments[segments.length - 1]?.hi ?? hi,
    segments,
    capacity,
    ref: {
      ...parent.ref,
      pool,
      range: formatSubnet(slice),
      base: slice.network,
      // Overlapping ranges share the network's space; otherwise the space is the node's own pool.
      space: parent.ref.space.startsWith('net.') ? parent.ref.space : `pool.${pool}`,
    },
  };
}
