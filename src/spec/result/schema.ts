// The shapes of the three result families as schemas (see ../schema.ts). Addresses are checked
// loosely here (dotted quad or hex-and-colons, with a prefix where one is due), as the reference's
// JSON decoding does; cross-references are checked in ./convert.ts.
import { conf, type Schema } from '../schema.js';
import type { ResultFamily } from '../version.js';

const CIDR_RE = /^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)\/[0-9]{1,3}$/;
const IP_RE = /^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)$/;

const cidr = conf.string().pattern(CIDR_RE).fix('use an address with a prefix length, e.g. "10.1.2.3/24"');
const ip = conf.string().pattern(IP_RE).fix('use a plain IP address, e.g. "10.1.2.1"');
const uint = conf.int(0).fix('use a whole number >= 0');
const strings = conf.array(conf.string()).fix('use a list of strings');

/** A DNS block (results and the `dns` field of a config). */
export const dnsSchema = conf
  .object({
    nameservers: strings.optional(),
    domain: conf.string().fix('use a string').optional(),
    search: strings.optional(),
    options: strings.optional(),
  })
  .fix('use an object with nameservers, domain, search and options');

const route = conf
  .object({
    dst: cidr,
    gw: ip.optional(),
    mtu: uint.optional(),
    advmss: uint.optional(),
    priority: uint.optional(),
    table: uint.optional(),
    scope: uint.optional(),
  })
  .fix('use an object such as {"dst": "0.0.0.0/0", "gw": "10.0.0.1"}');
const routes = conf.array(route).fix('use a list of routes');
const version = conf.string().fix('stamp the result with its spec version');

const interface100 = conf
  .object({
    name: conf.string().fix('use the interface name'),
    mac: conf.string().fix('use a MAC address string').optional(),
    mtu: uint.optional(),
    sandbox: conf.string().fix('use the netns path').optional(),
    socketPath: conf.string().fix('use a path string').optional(),
    pciID: conf.string().fix('use a PCI ID string').optional(),
  })
  .fix('use an object such as {"name": "eth0"}');

const result100 = conf.object({
  cniVersion: version,
  interfaces: conf.array(interface100).fix('use a list of interfaces').optional(),
  ips: conf
    .array(
      conf
        .object({ interface: uint.optional(), address: cidr, gateway: ip.optional() })
        .fix('use an object such as {"address": "10.0.0.2/24"}'),
    )
    .fix('use a list of IP objects')
    .optional(),
  routes: routes.optional(),
  dns: dnsSchema.optional(),
});

const result040 = conf.object({
  cniVersion: version,
  interfaces: conf
    .array(
      conf
        .object({
          name: conf.string().fix('use the interface name'),
          mac: conf.string().fix('use a MAC address string').optional(),
          sandbox: conf.string().fix('use the netns path').optional(),
        })
        .fix('use an object such as {"name": "eth0"}'),
    )
    .fix('use a list of interfaces')
    .optional(),
  ips: conf
    .array(
      conf
        .object({
          version: conf.enum(['4', '6', '']).fix('use "4" or "6"').optional(),
          interface: uint.optional(),
          address: cidr,
          gateway: ip.optional(),
        })
        .fix('use an object such as {"version": "4", "address": "10.0.0.2/24"}'),
    )
    .fix('use a list of IP objects')
    .optional(),
  routes: routes.optional(),
  dns: dnsSchema.optional(),
});

const ipBlock = conf
  .object({ ip: cidr, gateway: ip.optional(), routes: routes.optional() })
  .fix('use an object such as {"ip": "10.0.0.2/24"}');

const result020 = conf.object({
  cniVersion: version.optional(),
  ip4: ipBlock.optional(),
  ip6: ipBlock.optional(),
  dns: dnsSchema.optional(),
});

/** The schema of each result family. */
export const resultSchemas: Record<ResultFamily, Schema<unknown>> = {
  '0.2': result020,
  '0.4': result040,
  '1.x': result100,
};
