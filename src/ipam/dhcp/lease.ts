// One lease and its upkeep, as the reference daemon keeps it: acquired with retries (fast resends,
// then exponential backoff up to a cap, within an overall deadline), then a loop per lease that
// checks the link still exists, renews at T1 (unicast to the server), rebinds at T2 (broadcast)
// and, if the lease expires anyway, sets the link down. DEL stops the loop and sends DHCPRELEASE.
// A netns or link that disappears ends the loop quietly: the lease is dropped, the daemon goes on.
import type { IPConfig, Route } from '../../spec/result/types.js';
import { acquire, type ClientParams, extend, type Granted, release } from './client.js';
import { type DhcpNet, LinkGoneError } from './link.js';
import { leaseAddress, leaseRoutes } from './options.js';
import { ip4Text, Opt, u32 } from './packet.js';

/** Time for the lease logic; tests pass a simulated one. */
export interface Clock {
  now(): number;
  /** Resolves after `ms` (Infinity: never), or as soon as `signal` aborts (without throwing). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The process clock. */
export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      // setTimeout holds at most 2^31-1 ms; longer sleeps wake early and the caller re-checks.
      const timer = setTimeout(done, Math.min(ms, 0x7fffffff));
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    }),
};

/** The daemon's retry settings (its command-line flags). */
export interface LeaseTiming {
  /** Wait for each reply (--timeout; default 10 s). */
  timeoutMs: number;
  /** Cap of the backoff between attempts (--resend-max; default 62 s). */
  resendMaxMs: number;
  /** Give up acquiring (or one renew/rebind round) after this long (--resend-timeout; default 208 s). */
  resendTimeoutMs: number;
  /** Ask servers to broadcast their replies (--broadcast). */
  broadcast: boolean;
}

/** The reference's defaults. */
export const DEFAULT_TIMING: LeaseTiming = {
  timeoutMs: 10_000,
  resendMaxMs: 62_000,
  resendTimeoutMs: 208_000,
  broadcast: false,
};

/** Used when the server gives no lease time (option 51). */
export const DEFAULT_LEASE_SECONDS = 3600;
const FAST_DELAY_MS = 2_000;
const FAST_TRIES = 4;
const BASE_DELAY_MS = 4_000;
const JITTER_MS = 1_000;

/** Where a lease is in its life. */
export type LeaseState = 'bound' | 'renewing' | 'rebinding' | 'released' | 'expired' | 'dropped' | 'stopped';

/** A log line from the lease logic. */
export type LeaseLog = (
  level: 'info' | 'warn' | 'error',
  msg: string,
  fields?: Record<string, unknown>,
) => void;

/** What a lease needs besides its parameters. */
export interface LeaseDeps {
  net: DhcpNet;
  clock: Clock;
  timing: LeaseTiming;
  log: LeaseLog;
  /** Random in [0, 1) for jitter (injectable for tests). */
  random?: () => number;
}

/** What identifies a lease and where it lives. */
export interface LeaseSpec {
  /** containerID/netName/ifName (the reference's client ID). */
  key: string;
  netns: string;
  ifname: string;
  params: Omit<ClientParams, 'timeoutMs' | 'broadcast'>;
}

/** A snapshot of a lease (the daemon's GET /leases). */
export interface LeaseInfo {
  key: string;
  netns: string;
  ifname: string;
  address: string;
  server: string;
  state: LeaseState;
  /** Epoch ms of the last ACK, and of T1, T2 and expiry computed from it (null: an infinite lease). */
  boundAt: number;
  renewAt: number | null;
  rebindAt: number | null;
  expiresAt: number | null;
  renewals: number;
  rebinds: number;
}

/**
 * Runs `attempt` until it succeeds, with the reference's schedule: 4 fast retries 2 s (±1 s)
 * apart, then 4 s doubling up to `resendMaxMs`, all within `deadline`. A LinkGoneError or an abort
 * ends it at once.
 */
export async function withBackoff<T>(
  deps: LeaseDeps,
  deadline: number,
  signal: AbortSignal,
  what: string,
  attempt: () => Promise<T>,
): Promise<T> {
  const random = deps.random ?? Math.random;
  let base = BASE_DELAY_MS;
  let fast = FAST_TRIES;
  for (;;) {
    try {
      return await attempt();
    } catch (e) {
      if (e instanceof LinkGoneError || signal.aborted) throw e;
      const jitter = (2 * random() - 1) * JITTER_MS;
      const delay = (fast > 0 ? FAST_DELAY_MS : base) + jitter;
      const now = deps.clock.now();
      if (now + delay >= deadline) {
        throw new Error(`${what}: no more tries: ${(e as Error).message}`, { cause: e });
      }
      deps.log('warn', `${what} failed, retrying`, { error: (e as Error).message, inMs: Math.round(delay) });
      await deps.clock.sleep(delay, signal);
      if (signal.aborted) throw signal.reason ?? new Error('aborted');
      if (fast > 0) fast--;
      else if (base < deps.timing.resendMaxMs) base = Math.min(base * 2, deps.timing.resendMaxMs);
    }
  }
}

/** An instant for logs; an infinite lease never expires. */
function when(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : 'never';
}

const finite = (ms: number): number | null => (Number.isFinite(ms) ? ms : null);

/** A held lease; built by `DhcpLease.acquire`. */
export class DhcpLease {
  state: LeaseState = 'bound';
  renewals = 0;
  rebinds = 0;
  private boundAt = 0;
  private t1 = 0;
  private t2 = 0;
  private expiry = 0;
  private readonly stopper = new AbortController();
  private loop: Promise<void> = Promise.resolve();

  private constructor(
    readonly spec: LeaseSpec,
    private granted: Granted,
    private readonly deps: LeaseDeps,
    private readonly onEnd: (lease: DhcpLease) => void,
  ) {
    this.commit(granted);
  }

  /** Acquires a lease (with retries) and starts its upkeep; `onEnd` runs when the lease ends on its own. */
  static async acquire(
    spec: LeaseSpec,
    deps: LeaseDeps,
    signal: AbortSignal,
    onEnd: (lease: DhcpLease) => void,
  ): Promise<DhcpLease> {
    const params = DhcpLease.params(spec, deps);
    const deadline = deps.clock.now() + deps.timing.resendTimeoutMs;
    deps.log('info', 'acquiring lease', { key: spec.key });
    const granted = await withBackoff(deps, deadline, signal, 'acquire', async () => {
      const t = await deps.net.open(spec.netns, spec.ifname);
      try {
        return await acquire(t, params, signal);
      } finally {
        t.close();
      }
    });
    const lease = new DhcpLease(spec, granted, deps, onEnd);
    lease.loop = lease.maintain();
    deps.log('info', 'lease acquired', {
      key: spec.key,
      address: ip4Text(granted.ack.yiaddr),
      expiresAt: when(lease.expiry),
    });
    return lease;
  }

  private static params(spec: LeaseSpec, deps: LeaseDeps): ClientParams {
    return { ...spec.params, timeoutMs: deps.timing.timeoutMs, broadcast: deps.timing.broadcast };
  }

  private commit(g: Granted): void {
    this.granted = g;
    const lease = u32(g.ack.options.get(Opt.LEASE_TIME)) ?? DEFAULT_LEASE_SECONDS;
    const now = this.deps.clock.now();
    this.boundAt = now;
    if (lease === 0xffffffff) {
      this.t1 = this.t2 = this.expiry = Number.POSITIVE_INFINITY;
      return;
    }
    const t2 = u32(g.ack.options.get(Opt.REBINDING_TIME)) ?? (lease * 85) / 100;
    const t1 = u32(g.ack.options.get(Opt.RENEWAL_TIME)) ?? lease / 2;
    this.expiry = now + lease * 1000;
    this.t2 = now + Math.min(t2, lease) * 1000;
    this.t1 = now + Math.min(t1, t2, lease) * 1000;
  }

  /** The result entries: the address with its gateway, and the routes (metric `priority` when not 0). */
  result(priority: number): { ips: IPConfig[]; routes: Route[] } {
    return { ips: [leaseAddress(this.granted.ack)], routes: leaseRoutes(this.granted.ack, priority) };
  }

  /** The leased address as dotted text. */
  get address(): string {
    return ip4Text(this.granted.ack.yiaddr);
  }

  /** True while the lease is held and kept. */
  get active(): boolean {
    return this.state === 'bound' || this.state === 'renewing' || this.state === 'rebinding';
  }

  /** A snapshot for GET /v1/leases. */
  info(): LeaseInfo {
    return {
      key: this.spec.key,
      netns: this.spec.netns,
      ifname: this.spec.ifname,
      address: this.address,
      server: ip4Text(this.granted.serverId),
      state: this.state,
      boundAt: this.boundAt,
      renewAt: finite(this.t1),
      rebindAt: finite(this.t2),
      expiresAt: finite(this.expiry),
      renewals: this.renewals,
      rebinds: this.rebinds,
    };
  }

  private end(state: LeaseState): void {
    this.state = state;
    this.onEnd(this);
  }

  private async maintain(): Promise<void> {
    const { deps, spec } = this;
    const signal = this.stopper.signal;
    try {
      for (;;) {
        if (signal.aborted) return;
        if (!(await deps.net.linkExists(spec.netns, spec.ifname))) {
          deps.log('warn', 'interface or netns gone; lease dropped', {
            key: spec.key,
            netns: spec.netns,
            ifname: spec.ifname,
          });
          return this.end('dropped');
        }
        if (signal.aborted) return;
        const now = deps.clock.now();
        if (now < this.t1) {
          this.state = 'bound';
          await deps.clock.sleep(this.t1 - now, signal);
          continue;
        }
        if (now >= this.expiry) {
          deps.log('error', 'lease expired; setting the interface down', {
            key: spec.key,
            address: this.address,
          });
          await deps.net.setDown(spec.netns, spec.ifname).catch(() => undefined);
          return this.end('expired');
        }
        const how = now < this.t2 ? 'renew' : 'rebind';
        this.state = how === 'renew' ? 'renewing' : 'rebinding';
        const until = how === 'renew' ? this.t2 : this.expiry;
        try {
          const g = await withBackoff(deps, until, signal, how, async () => {
            const t = await deps.net.open(spec.netns, spec.ifname);
            try {
              return await extend(t, DhcpLease.params(spec, deps), this.granted, how, signal);
            } finally {
              t.close();
            }
          });
          this.commit(g);
          if (how === 'renew') this.renewals++;
          else this.rebinds++;
          this.state = 'bound';
          deps.log('info', `lease ${how === 'renew' ? 'renewed' : 'rebound'}`, {
            key: spec.key,
            expiresAt: when(this.expiry),
          });
        } catch (e) {
          if (signal.aborted) return;
          if (!(e instanceof LinkGoneError))
            deps.log('warn', `${how} failed`, { key: spec.key, error: (e as Error).message });
          // The next round re-checks the link and moves on to rebinding or expiry.
          if (deps.clock.now() < until)
            await deps.clock.sleep(Math.min(1000, until - deps.clock.now()), signal);
        }
      }
    } catch (e) {
      deps.log('error', 'lease upkeep failed; lease dropped', { key: spec.key, error: (e as Error).message });
      this.end('dropped');
    }
  }

  /** DEL: stops the upkeep and sends DHCPRELEASE when the link is still there. */
  async release(): Promise<void> {
    const wasActive = this.active;
    await this.halt();
    if (!wasActive) return;
    const { deps, spec } = this;
    try {
      const t = await deps.net.open(spec.netns, spec.ifname);
      try {
        release(t, DhcpLease.params(spec, deps), this.granted);
      } finally {
        t.close();
      }
      this.state = 'released';
      deps.log('info', 'lease released', { key: spec.key, address: this.address });
    } catch (e) {
      // The netns or link is gone: the server learns from expiry, as the reference leaves it.
      this.state = 'released';
      deps.log('warn', 'DHCPRELEASE not sent', { key: spec.key, error: (e as Error).message });
    }
  }

  /** Stops the upkeep without telling the server (daemon shutdown). */
  async halt(): Promise<void> {
    this.stopper.abort(new Error('lease stopped'));
    await this.loop;
    if (this.active) this.state = 'stopped';
  }
}
