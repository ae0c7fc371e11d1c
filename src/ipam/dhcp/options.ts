// The dhcp IPAM config (`ipam.provide`, `ipam.request`, `ipam.priority`, `ipam.daemonSocketPath`),
// the options a lease sends because of it, and what a lease's ACK becomes in a CNI result: the
// address, the gateway and routes (classless routes win over static routes and the router, RFC 3442).
import { CniError, ErrorCode } from '../../spec/errors.js';
import type { IPConfig, Route } from '../../spec/result/types.js';
import { conf, type Infer } from '../../spec/schema.js';
import { type DhcpMessage, ip4List, ip4Text, Opt } from './packet.js';

/** Where the plugin finds the daemon unless `ipam.daemonSocketPath` says otherwise (the reference's path). */
export const DEFAULT_DHCP_SOCKET = '/run/cni/dhcp.sock';

/** Option names the reference accepts besides decimal codes (dhcp-options(5) spelling). */
export const OPTION_NAMES: Readonly<Record<string, number>> = {
  'dhcp-client-identifier': Opt.CLIENT_ID,
  'subnet-mask': Opt.SUBNET_MASK,
  routers: Opt.ROUTER,
  'host-name': Opt.HOST_NAME,
  'user-class': Opt.USER_CLASS,
  'vendor-class-identifier': Opt.CLASS_ID,
};

/** Options the lease always asks for unless a `request` entry sets `skipDefault`: router and subnet mask. */
export const DEFAULT_REQUESTED = [Opt.ROUTER, Opt.SUBNET_MASK] as const;

const optionName = conf.custom((v, path): number => {
  const text = typeof v === 'number' ? String(v) : v;
  if (typeof text === 'string') {
    const named = OPTION_NAMES[text];
    if (named !== undefined) return named;
    if (/^\d{1,3}$/.test(text) && Number(text) >= 1 && Number(text) <= 254) return Number(text);
  }
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `${path}: ${JSON.stringify(v)} is not a DHCP option; use a code from 1 to 254 or one of ${Object.keys(OPTION_NAMES).join(', ')}`,
  );
});

/** The `ipam` fields of a dhcp config (others are kept and ignored). */
export const dhcpIpamConfig = conf.object({
  type: conf.string(),
  /** The daemon's socket; default /run/cni/dhcp.sock. */
  daemonSocketPath: conf.string().min(1).optional(),
  /** Options sent to the server: a literal `value`, or the CNI_ARGS entry `fromArg` (which wins when present). */
  provide: conf
    .array(
      conf.object({
        option: optionName,
        value: conf.string().max(255).optional(),
        fromArg: conf.string().optional(),
      }),
    )
    .default([]),
  /** Options asked for (parameter request list); `skipDefault` drops the default router + subnet mask. */
  request: conf
    .array(conf.object({ option: optionName.optional(), skipDefault: conf.bool().default(false) }))
    .default([]),
  /** Metric of every returned route (0: unset). */
  priority: conf.int(0, 0xffffffff).default(0),
});

/** The parsed `ipam` section. */
export type DhcpIpamConf = Infer<typeof dhcpIpamConfig>;

/** Parses a request's whole config; errors (code 7) name `ipam.<field>`. */
export function parseDhcpConfig(config: { ipam?: unknown }): DhcpIpamConf {
  return dhcpIpamConfig.parse(config.ipam ?? {}, { path: 'ipam' });
}

/** CNI_ARGS as the reference reads them for `fromArg`: `;`-separated `K=V`, anything else skipped. */
export function cniArgsMap(args: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of args.split(';')) {
    const eq = pair.indexOf('=');
    if (eq > 0) out.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
  return out;
}

/**
 * The options a lease adds to every DISCOVER/REQUEST: what `provide` gives (a `fromArg` value found
 * in CNI_ARGS replaces `value`) and the parameter request list. A provided client identifier
 * replaces the default one.
 */
export function leaseOptions(c: DhcpIpamConf, cniArgs: string): Map<number, Uint8Array> {
  const args = cniArgsMap(cniArgs);
  const out = new Map<number, Uint8Array>();
  c.provide.forEach((p, i) => {
    if (p.value) out.set(p.option, Buffer.from(p.value));
    const fromArg = p.fromArg === undefined ? undefined : args.get(p.fromArg);
    if (fromArg !== undefined) {
      if (Buffer.byteLength(fromArg) > 255) {
        throw new CniError(
          ErrorCode.InvalidNetworkConfig,
          `ipam.provide[${i}].fromArg: CNI_ARGS ${p.fromArg} is ${Buffer.byteLength(fromArg)} bytes, over the 255 a DHCP option holds; pass a shorter value`,
        );
      }
      out.set(p.option, Buffer.from(fromArg));
    }
  });
  const requested: number[] = [];
  let skipDefault = false;
  for (const r of c.request) {
    if (r.skipDefault) skipDefault = true;
    if (r.option !== undefined && !requested.includes(r.option)) requested.push(r.option);
  }
  if (!skipDefault) for (const o of DEFAULT_REQUESTED) if (!requested.includes(o)) requested.push(o);
  if (requested.length > 0) out.set(Opt.PARAMETER_LIST, Uint8Array.from(requested));
  return out;
}

/** The client identifier of an attachment: type 0 + `containerID/netName/ifName`, cut to 254 bytes as the reference does. */
export function clientId(containerId: string, netName: string, ifname: string): string {
  const id = `${containerId}/${netName}/${ifname}`;
  return id.length > 254 ? id.slice(0, 254) : id;
}

/** The option 61 value for a client ID (type 0: not a hardware address). */
export function clientIdOption(id: string): Uint8Array {
  return Buffer.concat([Buffer.from([0]), Buffer.from(id)]);
}

/** The prefix length of a subnet mask, or undefined when the mask is not contiguous. */
export function maskPrefix(mask: number): number | undefined {
  const m = mask >>> 0;
  const inv = ~m >>> 0;
  if ((inv & (inv + 1)) !== 0) return undefined;
  return 32 - Math.log2(inv + 1);
}

/** The address of an ACK as a result entry; the server must send a subnet mask (as the reference requires). */
export function leaseAddress(ack: DhcpMessage): IPConfig {
  const mask = ip4List(ack.options.get(Opt.SUBNET_MASK))[0];
  const prefix = mask === undefined ? undefined : maskPrefix(mask);
  if (prefix === undefined) {
    throw new CniError(
      ErrorCode.Internal,
      `the DHCP server's ACK for ${ip4Text(ack.yiaddr)} has ${mask === undefined ? 'no subnet mask (option 1)' : `a non-contiguous subnet mask ${ip4Text(mask)}`}`,
      'configure the server to send option 1 (subnet-mask)',
    );
  }
  const gw = ip4List(ack.options.get(Opt.ROUTER))[0];
  return {
    address: `${ip4Text(ack.yiaddr)}/${prefix}`,
    ...(gw !== undefined ? { gateway: ip4Text(gw) } : {}),
  };
}

/** The classful network of a destination (option 33 carries no prefix). */
function classful(dst: number): string {
  const first = dst >>> 24;
  const prefix = first < 128 ? 8 : first < 192 ? 16 : 24;
  const net = prefix === 8 ? dst & 0xff000000 : prefix === 16 ? dst & 0xffff0000 : dst & 0xffffff00;
  return `${ip4Text(net)}/${prefix}`;
}

/** RT_SCOPE_LINK: a classless route without a router is on-link. */
const SCOPE_LINK = 253;

/** Option 121 entries: width byte, significant destination octets, router. */
export function classlessRoutes(v: Uint8Array | undefined): Route[] | undefined {
  if (!v || v.length === 0) return undefined;
  const out: Route[] = [];
  let o = 0;
  while (o < v.length) {
    const width = v[o++] as number;
    if (width > 32) return undefined;
    const n = Math.ceil(width / 8);
    if (o + n + 4 > v.length) return undefined;
    let dst = 0;
    for (let i = 0; i < 4; i++) dst = dst * 256 + (i < n ? (v[o + i] as number) : 0);
    o += n;
    const gw =
      (((v[o] as number) << 24) |
        ((v[o + 1] as number) << 16) |
        ((v[o + 2] as number) << 8) |
        (v[o + 3] as number)) >>>
      0;
    o += 4;
    const mask = width === 0 ? 0 : (0xffffffff << (32 - width)) >>> 0;
    const route: Route = { dst: `${ip4Text((dst & mask) >>> 0)}/${width}`, gw: ip4Text(gw) };
    if (gw === 0) route.scope = SCOPE_LINK;
    out.push(route);
  }
  return out;
}

/**
 * The routes of a lease as the reference builds them: option 121 when present (alone); otherwise
 * option 33's classful routes and a default route via the first router. `priority` (when not 0)
 * becomes every route's metric.
 */
export function leaseRoutes(ack: DhcpMessage, priority: number): Route[] {
  let routes = classlessRoutes(ack.options.get(Opt.CLASSLESS_ROUTES));
  if (!routes) {
    routes = [];
    const st = ip4List(ack.options.get(Opt.STATIC_ROUTES));
    for (let i = 0; i + 1 < st.length; i += 2) {
      routes.push({ dst: classful(st[i] as number), gw: ip4Text(st[i + 1] as number) });
    }
    const gw = ip4List(ack.options.get(Opt.ROUTER))[0];
    if (gw !== undefined) routes.push({ dst: '0.0.0.0/0', gw: ip4Text(gw) });
  }
  if (priority !== 0) for (const r of routes) r.priority = priority;
  return routes;
}
