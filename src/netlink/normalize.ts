// Validation and normalization of op arguments, shared by both backends so they reject and
// canonicalize identically (code 7 errors that name the value and the fix).
import type { CniError } from '../spec/errors.js';
import { invalidArg } from './errors.js';
import type { Family, LinkSettings, LinkSpec, RouteSpec, RuleSpec } from './types.js';
import {
  checkIfName,
  checkInt,
  checkMac,
  checkMtu,
  checkNetnsPath,
  parseCidr,
  parseIp,
  parseRouteDst,
} from './validate.js';

/** A route after validation: canonical dst, family resolved. */
export interface NormRoute extends Omit<RouteSpec, 'dst' | 'family'> {
  dst: string;
  family: Family;
}

const MAIN_TABLE = 254;

/** Checks a LinkSpec; returns a copy with MACs lower-cased. */
export function checkSpec(spec: LinkSpec): LinkSpec {
  const s = { ...spec } as LinkSpec & Record<string, unknown>;
  checkIfName(s.name, `${s.kind} name`);
  if (s.mtu !== undefined) checkMtu(s.mtu, `${s.name}.mtu`);
  if (s.mac !== undefined) s.mac = checkMac(s.mac, `${s.name}.mac`);
  if (s.netns !== undefined) checkNetnsPath(s.netns);
  switch (s.kind) {
    case 'veth':
      checkIfName(s.peerName, 'veth peerName');
      if (s.peerNetns !== undefined) checkNetnsPath(s.peerNetns);
      if (s.peerMac !== undefined) s.peerMac = checkMac(s.peerMac, `${s.peerName}.mac`);
      if (s.peerMtu !== undefined) checkMtu(s.peerMtu, `${s.peerName}.mtu`);
      break;
    case 'macvlan':
    case 'ipvlan':
    case 'vlan':
      checkIfName(s.parent, `${s.kind} parent`);
      if (s.kind === 'vlan') checkInt(s.vlanId, 'vlanId', 0, 4094);
      if (
        s.kind === 'macvlan' &&
        s.mode &&
        !['bridge', 'private', 'vepa', 'passthru', 'source'].includes(s.mode)
      )
        throw checkEnumError('macvlan mode', s.mode, 'one of bridge, private, vepa, passthru, source');
      if (s.kind === 'macvlan' && s.bcQueueLen !== undefined)
        checkInt(s.bcQueueLen, `${s.name}.bcQueueLen`, 0, 0xffffffff);
      if (s.kind === 'ipvlan' && s.mode && !['l2', 'l3', 'l3s'].includes(s.mode))
        throw checkEnumError('ipvlan mode', s.mode, 'one of l2, l3, l3s');
      break;
    case 'vxlan':
      checkInt(s.vni, 'vxlan vni', 0, 0xffffff);
      if (s.parent !== undefined) checkIfName(s.parent, 'vxlan parent');
      for (const k of ['remote', 'local', 'group'] as const)
        if (s[k] !== undefined) parseIp(s[k], `vxlan ${k}`);
      if (s.port !== undefined) checkInt(s.port, 'vxlan port', 1, 65535);
      break;
    case 'tap':
    case 'tun':
      // /dev/net/tun makes the device in the netns of the caller; there is no "create it over there".
      if (s.netns !== undefined)
        throw invalidArg(
          `${s.name}.netns`,
          s.netns,
          `cannot be set for a ${s.kind}; create it with a handle on that netns instead`,
        );
      // The device's own range (tun: 68..65535; a tap keeps room for its Ethernet header), checked
      // here because `ip tuntap add` creates the device before its MTU can be set.
      if (s.mtu !== undefined) checkInt(s.mtu, `${s.name}.mtu`, 68, s.kind === 'tap' ? 65521 : 65535);
      if (s.kind === 'tun' && s.mac !== undefined)
        throw invalidArg(`${s.name}.mac`, s.mac, 'cannot be set: a tun device has no MAC; use a tap');
      for (const k of ['owner', 'group'] as const)
        if (s[k] !== undefined) checkInt(s[k], `${s.name}.${k}`, 0, 0xfffffffe);
      for (const k of ['multiQueue', 'vnetHdr'] as const)
        if (s[k] !== undefined && typeof s[k] !== 'boolean')
          throw invalidArg(`${s.name}.${k}`, s[k], 'must be true or false');
      break;
    case 'vrf':
      checkInt(s.table, `${s.name}.table`, 1, 0xffffffff);
      break;
    case 'bridge':
    case 'ifb':
    case 'dummy':
      break;
    default:
      throw checkEnumError(
        'link kind',
        (s as { kind: unknown }).kind,
        'one of bridge, veth, macvlan, ipvlan, vlan, vxlan, ifb, dummy, tap, tun, vrf',
      );
  }
  return s;
}

/** A code-7 error for a value outside its allowed set. */
export function checkEnumError(what: string, v: unknown, allowed: string): CniError {
  return invalidArg(what, v, `must be ${allowed}`);
}

/** Checks LinkSettings; '' alias becomes null (clear). */
export function checkSettings(name: string, set: LinkSettings): LinkSettings {
  const out: LinkSettings = { ...set };
  // Any value the kernel's u32 attribute carries; the device checks its own range (lo takes 65536+).
  if (set.mtu !== undefined) checkInt(set.mtu, `${name}.mtu`, 0, 2 ** 31 - 1);
  if (set.mac !== undefined) out.mac = checkMac(set.mac, `${name}.mac`);
  if (set.master !== undefined && set.master !== null) checkIfName(set.master, `${name}.master`);
  if (set.txqlen !== undefined) checkInt(set.txqlen, `${name}.txqlen`, 0, 0xffffffff);
  if (set.alias !== undefined && set.alias !== null && !/^[^\s"'\\#]{0,255}$/.test(set.alias))
    throw checkEnumError(`${name}.alias`, set.alias, 'up to 255 characters without whitespace, quotes or #');
  if (set.alias === '') out.alias = null;
  return out;
}

/** Validates a RouteSpec into a NormRoute (canonical dst, family resolved). */
export function normRoute(r: RouteSpec, forDelete = false): NormRoute {
  const gw = r.gw === undefined ? undefined : parseIp(r.gw, 'route gw');
  const { dst, family } = parseRouteDst(r.dst, r.family ?? gw?.family);
  if (gw && gw.family !== family)
    throw checkEnumError('route gw', r.gw, `an IPv${family} gateway for ${dst}`);
  const out: NormRoute = { dst, family };
  if (gw) out.gw = gw.ip;
  if (r.dev !== undefined) out.dev = checkIfName(r.dev, 'route dev');
  if (r.table !== undefined && r.table !== MAIN_TABLE)
    out.table = checkInt(r.table, 'route table', 1, 0xffffffff);
  if (r.metric !== undefined) out.metric = checkInt(r.metric, 'route metric', 0, 0xffffffff);
  if (r.scope !== undefined) {
    if (!['global', 'link', 'host'].includes(r.scope))
      throw checkEnumError('route scope', r.scope, 'one of global, link, host');
    out.scope = r.scope;
  }
  if (r.src !== undefined) {
    const src = parseIp(r.src, 'route src');
    if (src.family !== family) throw checkEnumError('route src', r.src, `an IPv${family} source`);
    out.src = src.ip;
  }
  if (r.mtu !== undefined) out.mtu = checkInt(r.mtu, 'route mtu', 68, 65535);
  if (r.advmss !== undefined) out.advmss = checkInt(r.advmss, 'route advmss', 1, 65535);
  if (r.protocol !== undefined) {
    if (!['kernel', 'boot', 'static'].includes(r.protocol))
      throw checkEnumError('route protocol', r.protocol, 'one of kernel, boot, static');
    out.protocol = r.protocol;
  }
  if (!gw && !out.dev && !forDelete) throw checkEnumError('route', r, 'given a gw or a dev');
  return out;
}

/** Validates a RuleSpec (prefixes canonical, family consistent). */
export function normRule(r: RuleSpec): RuleSpec {
  const out: RuleSpec = { family: r.family, table: checkInt(r.table, 'rule table', 1, 0xffffffff) };
  if (r.family !== 4 && r.family !== 6) throw checkEnumError('rule family', r.family, '4 or 6');
  if (r.priority !== undefined) out.priority = checkInt(r.priority, 'rule priority', 0, 0xffffffff);
  for (const k of ['src', 'dst'] as const) {
    if (r[k] === undefined) continue;
    const c = parseCidr(r[k], `rule ${k}`, true);
    if (c.family !== r.family) throw checkEnumError(`rule ${k}`, r[k], `an IPv${r.family} prefix`);
    out[k] = c.cidr;
  }
  return out;
}
