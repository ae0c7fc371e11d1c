// Ops and reads as iproute2 text. Inputs were validated (no spaces, quotes or newlines), so lines can
// be joined into an `ip -batch` stream or a shell script without quoting.
import type { NormRoute, Op, Read } from '../ops.js';
import type { LinkSettings, LinkSpec } from '../types.js';

const onoff = (b: boolean): string => (b ? 'on' : 'off');

/** `ip tuntap add` (the kernel makes tun/tap devices only through /dev/net/tun), then mtu and MAC. */
function tuntapAdd(s: Extract<LinkSpec, { kind: 'tap' | 'tun' }>): string[] {
  const w = ['tuntap', 'add', 'mode', s.kind, 'name', s.name];
  if (s.multiQueue) w.push('multi_queue');
  if (s.vnetHdr) w.push('vnet_hdr');
  if (s.owner !== undefined) w.push('user', String(s.owner));
  if (s.group !== undefined) w.push('group', String(s.group));
  const set: string[] = [];
  if (s.mtu !== undefined) set.push('mtu', String(s.mtu));
  if (s.mac !== undefined) set.push('address', s.mac);
  return [w.join(' '), ...(set.length ? [`link set dev ${s.name} ${set.join(' ')}`] : [])];
}

/** The `ip -batch` lines creating `s`. */
export function linkAddLines(s: LinkSpec): string[] {
  return s.kind === 'tap' || s.kind === 'tun' ? tuntapAdd(s) : [linkAdd(s)];
}

function linkAdd(s: LinkSpec): string {
  const w: string[] = ['link', 'add'];
  if ('parent' in s && s.parent && s.kind !== 'vxlan') w.push('link', s.parent);
  w.push('name', s.name);
  if (s.mtu !== undefined) w.push('mtu', String(s.mtu));
  if (s.mac !== undefined) w.push('address', s.mac);
  if (s.netns !== undefined) w.push('netns', s.netns);
  w.push('type', s.kind);
  switch (s.kind) {
    case 'bridge':
      if (s.vlanFiltering) w.push('vlan_filtering', '1');
      break;
    case 'veth':
      w.push('peer', 'name', s.peerName);
      if (s.peerMac !== undefined) w.push('address', s.peerMac);
      if (s.peerMtu !== undefined) w.push('mtu', String(s.peerMtu));
      if (s.peerNetns !== undefined) w.push('netns', s.peerNetns);
      break;
    case 'macvlan':
      w.push('mode', s.mode ?? 'bridge');
      if (s.bcQueueLen !== undefined) w.push('bcqueuelen', String(s.bcQueueLen));
      break;
    case 'ipvlan':
      w.push('mode', s.mode ?? 'l2');
      break;
    case 'vlan':
      w.push('id', String(s.vlanId));
      break;
    case 'vrf':
      w.push('table', String(s.table));
      break;
    case 'vxlan':
      w.push('id', String(s.vni), 'dstport', String(s.port ?? 4789));
      if (s.parent) w.push('dev', s.parent);
      if (s.remote) w.push('remote', s.remote);
      if (s.local) w.push('local', s.local);
      if (s.group) w.push('group', s.group);
      if (s.learning === false) w.push('nolearning');
      break;
    default:
      break;
  }
  return w.join(' ');
}

function linkSet(name: string, set: LinkSettings): string[] {
  const w: string[] = [];
  if (set.mtu !== undefined) w.push('mtu', String(set.mtu));
  if (set.mac !== undefined) w.push('address', set.mac);
  if (set.master !== undefined) w.push(...(set.master === null ? ['nomaster'] : ['master', set.master]));
  if (set.promisc !== undefined) w.push('promisc', onoff(set.promisc));
  if (set.allmulti !== undefined) w.push('allmulticast', onoff(set.allmulti));
  if (set.txqlen !== undefined) w.push('txqueuelen', String(set.txqlen));
  if (set.alias !== undefined) w.push('alias', set.alias === null ? '""' : set.alias);
  if (set.up !== undefined) w.push(set.up ? 'up' : 'down');
  const lines = w.length ? [`link set dev ${name} ${w.join(' ')}`] : [];
  const port: string[] = [];
  if (set.hairpin !== undefined) port.push('hairpin', onoff(set.hairpin));
  if (set.isolated !== undefined) port.push('isolated', onoff(set.isolated));
  if (port.length) lines.push(`link set dev ${name} type bridge_slave ${port.join(' ')}`);
  return lines;
}

function route(verb: string, r: NormRoute): string {
  const w = ['route', verb, r.dst];
  if (r.gw) w.push('via', r.gw);
  if (r.dev) w.push('dev', r.dev);
  if (r.table !== undefined) w.push('table', String(r.table));
  if (r.metric !== undefined) w.push('metric', String(r.metric));
  if (r.scope !== undefined) w.push('scope', r.scope);
  if (r.src !== undefined) w.push('src', r.src);
  if (r.mtu !== undefined) w.push('mtu', String(r.mtu));
  if (r.advmss !== undefined) w.push('advmss', String(r.advmss));
  if (r.protocol !== undefined) w.push('proto', r.protocol);
  return w.join(' ');
}

/** The `ip -batch` lines for one op (empty for a no-op setLink; sysctl ops are not ip lines). */
export function ipLines(op: Op): string[] {
  switch (op.t) {
    case 'link-add':
      return linkAddLines(op.spec);
    case 'link-del':
      return [`link del dev ${op.name}`];
    case 'link-set':
      return linkSet(op.name, op.set);
    case 'link-rename':
      return [`link set dev ${op.name} name ${op.newName}`];
    case 'link-move':
      return [`link set dev ${op.name} netns ${op.netns}`];
    case 'addr-add': {
      // The Go reference sets the IPv4 broadcast address; `brd +` derives it the same way.
      const prefix = Number(op.cidr.split('/')[1]);
      const brd = op.family === 4 && prefix < 31 ? ' brd +' : '';
      // existsOk → `replace`: idempotent inside one batch, no tolerated failure to work around.
      const verb = op.ok === 'exists' ? 'replace' : 'add';
      return [`addr ${verb} ${op.cidr}${brd} dev ${op.link}${op.noDad ? ' nodad' : ''}`];
    }
    case 'addr-del':
      return [`addr del ${op.cidr} dev ${op.link}`];
    case 'route-add':
      return [route('add', op.route)];
    case 'route-replace':
      return [route('replace', op.route)];
    case 'route-append':
      return [route('append', op.route)];
    case 'route-ecmp':
      // `prepend` is iproute2's name for NLM_F_CREATE without NLM_F_EXCL or NLM_F_APPEND.
      return [route('prepend', op.route)];
    case 'route-del':
      return [route('del', op.route)];
    case 'rule-add':
    case 'rule-del': {
      const r = op.rule;
      const w = ['rule', op.t === 'rule-add' ? 'add' : 'del', 'from', r.src ?? 'all'];
      if (r.dst) w.push('to', r.dst);
      if (r.priority !== undefined) w.push('priority', String(r.priority));
      w.push('table', String(r.table));
      return [w.join(' ')];
    }
    case 'tbf': {
      const t = op.spec;
      return [
        `qdisc replace dev ${op.link} root handle 1: tbf rate ${t.rateBits}bit burst ${t.burstBytes}b latency ${t.latencyMs}ms`,
      ];
    }
    case 'ingress-add':
      return [`qdisc add dev ${op.link} handle ffff: ingress`];
    case 'redirect':
      return [
        `filter add dev ${op.link} parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ${op.to}`,
      ];
    case 'qdisc-del':
      return [`qdisc del dev ${op.link} ${op.which}`];
    case 'vlan-add': {
      const flags = `${op.pvid ? ' pvid' : ''}${op.untagged ? ' untagged' : ''}${op.self ? ' self' : ''}`;
      return [`vlan add dev ${op.link} vid ${op.vid}${flags}`];
    }
    case 'vlan-del':
      return [`vlan del dev ${op.link} vid ${op.vid}${op.self ? ' self' : ''}`];
    case 'sysctl-set':
      return [];
  }
}

/** The iproute2 programs; all three read `-batch -` and take `-n NAME`. */
export type Tool = 'ip' | 'tc' | 'bridge';

/** Which program runs an op, or 'sysctl' for a /proc/sys write. */
export function toolOf(op: Op): Tool | 'sysctl' {
  if (op.t === 'sysctl-set') return 'sysctl';
  if (op.t === 'vlan-add' || op.t === 'vlan-del') return 'bridge';
  const tc = op.t === 'tbf' || op.t === 'ingress-add' || op.t === 'redirect' || op.t === 'qdisc-del';
  return tc ? 'tc' : 'ip';
}

/** Which program serves a read. */
export function readTool(r: Read): Tool | 'sysctl' {
  if (r.t === 'sysctl') return 'sysctl';
  if (r.t === 'vlans') return 'bridge';
  return r.t === 'qdiscs' || r.t === 'redirects' ? 'tc' : 'ip';
}

/** True when the op may fail in a way the caller tolerates, so the engine must catch that failure. */
export function needsTolerance(op: Op): boolean {
  return op.ok !== undefined && !(op.t === 'addr-add' && op.ok === 'exists');
}

/** The global family flag an op's lines need: IPv6 rules cannot be told apart inside a batch line. */
export function familyFlag(op: Op): '' | '-6' {
  return (op.t === 'rule-add' || op.t === 'rule-del') && op.rule.family === 6 ? '-6' : '';
}

/** The `ip`/`tc` arguments (after the global `-j`) for a read; undefined for sysctl reads. */
export function readArgs(r: Read): string[] | undefined {
  switch (r.t) {
    case 'links':
      return ['-d', 'link', 'show'];
    case 'addrs':
      return ['addr', 'show'];
    case 'routes':
      return [`-${r.family}`, 'route', 'show', 'table', String(r.table)];
    case 'rules':
      return [`-${r.family}`, 'rule', 'show'];
    case 'qdiscs':
      return ['qdisc', 'show'];
    case 'redirects':
      return ['filter', 'show', 'dev', r.link, 'parent', 'ffff:'];
    case 'vlans':
      return ['vlan', 'show', 'dev', r.link];
    case 'sysctl':
      return undefined;
  }
}
