// firewalld over D-Bus, the calls the reference makes: the bus's GetNameOwner to tell whether
// firewalld runs, and on org.fedoraproject.FirewallD1.zone addSource / removeSource / querySource
// with (zone, "<ip>/32" or "<ip>/128"). The calls go through `busctl` (systemd), so the plugin needs
// no D-Bus library; `--system` honours DBUS_SYSTEM_BUS_ADDRESS, and `address` picks another bus.
import { CniError, ErrorCode } from 'cni-kit';
import type { IptablesRunner } from 'cni-kit/netsetup';

export const FIREWALLD_NAME = 'org.fedoraproject.FirewallD1';
export const FIREWALLD_PATH = '/org/fedoraproject/FirewallD1';
export const FIREWALLD_ZONE = 'org.fedoraproject.FirewallD1.zone';

/** What the plugin asks of firewalld; tests replace it or point it at a bus of their own. */
export interface FirewalldClient {
  /** Whether a process owns firewalld's bus name (false when there is no bus or no busctl). */
  running(): Promise<boolean>;
  /** Puts `source` in `zone`; false when it already was (ZONE_ALREADY_SET), which is success. */
  addSource(zone: string, source: string): Promise<boolean>;
  /** Takes `source` out of `zone`. */
  removeSource(zone: string, source: string): Promise<void>;
  /** Whether `source` is in `zone`. */
  querySource(zone: string, source: string): Promise<boolean>;
}

/** Options of {@link busctlFirewalld}. */
export interface BusctlOptions {
  /** Runs busctl (the seam tests replace); default: spawns it from PATH. */
  runner: IptablesRunner;
  /** A D-Bus address ("unix:path=/run/x/bus"); default: the system bus. */
  address?: string | undefined;
  /** Per-call timeout in seconds (busctl --timeout); default 10. */
  timeoutSec?: number | undefined;
}

/** A firewalld client that runs `busctl call` per request. */
export function busctlFirewalld(opts: BusctlOptions): FirewalldClient {
  const bus = opts.address ? [`--address=${opts.address}`] : ['--system'];
  const base = [...bus, `--timeout=${opts.timeoutSec ?? 10}`, 'call'];
  const call = (dest: string, path: string, iface: string, method: string, sig: string, ...args: string[]) =>
    opts.runner('busctl', [...base, dest, path, iface, method, sig, ...args]);
  const fail = (method: string, zone: string, source: string, r: { code: number; stderr: string }) => {
    const why = r.stderr.trim() || 'no message';
    if (/INVALID_ZONE/.test(why))
      return new CniError(
        ErrorCode.InvalidNetworkConfig,
        `firewalldZone: ${JSON.stringify(zone)} is not a zone firewalld knows (${why}); use an existing zone such as "trusted" (the default)`,
      );
    const down = /Failed to connect|ServiceUnknown|NameHasNoOwner|no such name|Connection refused/i.test(why);
    return new CniError(
      ErrorCode.Internal,
      `firewalld: ${method}(${zone}, ${source}) failed (busctl exit ${r.code}): ${why}`,
      down
        ? 'is firewalld running on the system bus? Set "backend": "iptables" to use iptables instead'
        : 'firewalld refused the request: an address can be in one zone only',
    );
  };
  return {
    async running() {
      const r = await call(
        'org.freedesktop.DBus',
        '/org/freedesktop/DBus',
        'org.freedesktop.DBus',
        'GetNameOwner',
        's',
        FIREWALLD_NAME,
      );
      return r.code === 0;
    },
    async addSource(zone, source) {
      const r = await call(FIREWALLD_NAME, FIREWALLD_PATH, FIREWALLD_ZONE, 'addSource', 'ss', zone, source);
      if (r.code === 0) return true;
      if (/ZONE_ALREADY_SET/.test(r.stderr)) return false;
      throw fail('addSource', zone, source, r);
    },
    async removeSource(zone, source) {
      const r = await call(
        FIREWALLD_NAME,
        FIREWALLD_PATH,
        FIREWALLD_ZONE,
        'removeSource',
        'ss',
        zone,
        source,
      );
      if (r.code !== 0) throw fail('removeSource', zone, source, r);
    },
    async querySource(zone, source) {
      const r = await call(FIREWALLD_NAME, FIREWALLD_PATH, FIREWALLD_ZONE, 'querySource', 'ss', zone, source);
      if (r.code !== 0) throw fail('querySource', zone, source, r);
      // busctl prints the reply as its signature and value: "b true".
      return /^b\s+true\b/.test(r.stdout.trim());
    },
  };
}
