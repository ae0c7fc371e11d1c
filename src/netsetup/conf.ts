// Config fields main plugins share, as schema pieces (see cni-kit's `conf`), and the MAC lookup
// order the reference plugins share (CNI_ARGS MAC, args.cni.mac, runtimeConfig.mac, own field).
import { conf } from '../spec/schema.js';

/** An MTU field: 0 or unset means "the kernel's default" (as in the reference plugins). */
export const mtuField = conf
  .int(0, 65535)
  .optional()
  .transform((v) => (v === 0 ? undefined : v));

type Obj = Record<string, unknown>;

/**
 * The MAC requested for the container interface, in the reference's precedence: CNI_ARGS MAC,
 * then args.cni.mac, then runtimeConfig.mac, then the config's own `mac` (or `ownField`).
 * A malformed or multicast MAC is code 7 naming where it came from.
 */
export function requestedMac(
  config: Record<string, unknown>,
  args: ReadonlyArray<readonly [string, string]>,
  ownField = 'mac',
): string | undefined {
  const mac = conf.mac();
  const fromArgs = [...args].reverse().find(([k]) => k === 'MAC')?.[1];
  if (fromArgs) return mac.parse(fromArgs, { path: 'CNI_ARGS MAC' });
  const cni = ((config.args as Obj | undefined)?.cni ?? undefined) as Obj | undefined;
  if (cni?.mac !== undefined && cni.mac !== null) return mac.parse(cni.mac, { path: 'args.cni.mac' });
  const rc = config.runtimeConfig as Obj | undefined;
  if (rc?.mac !== undefined && rc.mac !== '')
    return mac.optional().parse(rc.mac, { path: 'runtimeConfig.mac' });
  const own = config[ownField];
  if (own !== undefined && own !== '') return mac.optional().parse(own, { path: ownField });
  return undefined;
}
