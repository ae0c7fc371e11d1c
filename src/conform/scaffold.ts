// The world a prevResult fixture describes, built for one attachment so a chained plugin (tuning,
// portmap, bandwidth, firewall, sbr) finds what the previous plugin would have left: a veth pair
// with its host end in the node netns (a kit-owned name) and CNI_IFNAME in the container, the
// fixture's container addresses (shifted by the attachment's index, so attachments differ) and
// routes. The prevResult handed to the plugin names the real links and MACs.
import { basename } from 'node:path';
import { formatIP, ipAdd, type Result, tryParseIP } from '../spec/index.js';
import { inNetns } from './netns.js';
import { mustRun } from './proc.js';

export interface ScaffoldOptions {
  /** CNI_NETNS of the attachment (a /run/netns path). */
  containerNetns: string;
  /** The node netns path, or undefined for the caller's. */
  nodeNetns: string | undefined;
  ifname: string;
  /** Name of the host end (at most 15 bytes); the caller tracks it as kit-owned. */
  hostName: string;
  /** Added to every container address of the fixture. */
  offset: number;
}

function shift(cidr: string, by: number): string {
  const [addr = '', prefix] = cidr.split('/');
  const ip = tryParseIP(addr);
  if (!ip) throw new Error(`prevResult fixture: ${JSON.stringify(cidr)} is not an address`);
  return `${formatIP(ipAdd(ip, BigInt(by)))}${prefix !== undefined ? `/${prefix}` : ''}`;
}

async function ip(netns: string | undefined, args: string[]): Promise<string> {
  const [f, a] = inNetns(netns, 'ip', args);
  return mustRun(f, a);
}

async function macOf(netns: string | undefined, dev: string): Promise<string | undefined> {
  const out = JSON.parse(await ip(netns, ['-j', 'link', 'show', 'dev', dev])) as Array<{ address?: string }>;
  return out[0]?.address;
}

/** Builds the fixture's links, addresses and routes; returns the prevResult (1.1.0 shape). */
export async function buildScaffold(fixture: Result, o: ScaffoldOptions): Promise<Result> {
  const ifaces = fixture.interfaces ?? [];
  const cIdx = Math.max(
    0,
    ifaces.findIndex((i) => i.sandbox),
  );
  const hIdx = ifaces.findIndex((i, n) => !i.sandbox && n !== cIdx);
  await ip(o.nodeNetns, [
    'link',
    'add',
    o.hostName,
    'type',
    'veth',
    'peer',
    'name',
    o.ifname,
    'netns',
    basename(o.containerNetns),
  ]);
  await ip(o.nodeNetns, ['link', 'set', o.hostName, 'up']);
  await ip(o.containerNetns, ['link', 'set', o.ifname, 'up']);
  const ips = (fixture.ips ?? []).map((c) => ({ ...c, address: shift(c.address, o.offset) }));
  for (const c of ips) {
    if (c.interface === undefined || c.interface === cIdx) {
      await ip(o.containerNetns, ['addr', 'add', c.address, 'dev', o.ifname]);
    }
  }
  for (const r of fixture.routes ?? []) {
    await ip(o.containerNetns, ['route', 'add', r.dst, ...(r.gw ? ['via', r.gw] : []), 'dev', o.ifname]);
  }
  const [cMac, hMac] = await Promise.all([macOf(o.containerNetns, o.ifname), macOf(o.nodeNetns, o.hostName)]);
  const interfaces = ifaces.length ? ifaces.map((i) => ({ ...i })) : [{ name: o.ifname }];
  interfaces[cIdx] = {
    ...interfaces[cIdx],
    name: o.ifname,
    sandbox: o.containerNetns,
    ...(cMac ? { mac: cMac } : {}),
  };
  if (hIdx >= 0) {
    const { sandbox: _drop, ...host } = interfaces[hIdx]!;
    interfaces[hIdx] = { ...host, name: o.hostName, ...(hMac ? { mac: hMac } : {}) };
  }
  return { ...fixture, cniVersion: '1.1.0', interfaces, ips };
}
