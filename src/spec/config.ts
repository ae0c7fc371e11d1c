import { CniError, ErrorCode } from './errors.js';
import { MAX_NETWORK_NAME_BYTES, networkNameTooLong } from './identifiers.js';
import { parseResult, toCurrentResult } from './result/convert.js';
import { dnsSchema } from './result/schema.js';
import type { DNS, Result } from './result/types.js';
import type { RuntimeConfig } from './runtime-config.js';
import { conf } from './schema.js';
import { CURRENT_VERSION, compareVersions, normalizeVersion } from './version.js';

/** The `ipam` block of a plugin config; its fields beyond `type` belong to the IPAM plugin. */
export interface IpamConf {
  type: string;
  [key: string]: unknown;
}

/** The fields a plugin object and a plugin's request config share; unknown keys are preserved. */
export interface PluginConfFields {
  name?: string;
  cniVersion?: string;
  capabilities?: Record<string, boolean>;
  ipam?: IpamConf;
  dns?: DNS;
  runtimeConfig?: RuntimeConfig;
  args?: {
    cni?: { ips?: string[]; labels?: Array<{ key: string; value: string }>; [k: string]: unknown };
    [k: string]: unknown;
  };
  prevResult?: unknown;
  [key: string]: unknown;
}

/** One plugin object of a conflist (or a single-plugin config): a runtime runs it by `type`. */
export interface PluginConf extends PluginConfFields {
  type: string;
}

/**
 * The request config a plugin receives on stdin, with `name` and `cniVersion` always set. `type`
 * may be absent, as the Go skel accepts (cni.dev's host-local example pipes `{"cniVersion", "name",
 * "ipam"}` straight into the binary): the runtime that found the plugin by type has no further use
 * for it, and code that does (delegation by type) refuses it there with code 7.
 */
export interface NetConf extends PluginConfFields {
  type?: string;
  name: string;
  /** The config's version; "" and a missing value read as "0.1.0" as in the Go library. */
  cniVersion: string;
  /** The previous plugin's result, converted up to the current result type. */
  prevResult?: Result;
}

/** A parsed network configuration list. */
export interface NetConfList {
  /** The effective version: the highest known entry of `cniVersions`, else `cniVersion` verbatim. */
  cniVersion: string;
  cniVersions?: string[];
  name: string;
  disableCheck: boolean;
  disableGC: boolean;
  loadOnlyInlinedPlugins: boolean;
  plugins: PluginConf[];
  /** The decoded JSON as given, unknown keys included. */
  raw: Record<string, unknown>;
}

/** One attachment of a container to a network: what GC keeps and caches are keyed by. */
export interface Attachment {
  containerId: string;
  ifname: string;
}

/** An attachment as GC's `cni.dev/valid-attachments` carries it on the wire. */
export interface AttachmentJson {
  containerID: string;
  ifname: string;
}

const ID_FIX = "use letters, digits, '_', '.' and '-', starting with a letter or digit";
const boolishField = conf.boolish();
const versionField = conf.string().fix('use a spec version such as "1.1.0"');
const versionsField = conf
  .array(conf.string().fix('list spec versions as strings such as "1.1.0"'))
  .fix('use a list of spec versions such as ["1.0.0", "1.1.0"]');
const nameField = conf
  .string()
  .pattern(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/)
  .fix(ID_FIX)
  .refine(
    (s) =>
      networkNameTooLong(s)
        ? `is ${Buffer.byteLength(s, 'utf8')} bytes long; the limit is ${MAX_NETWORK_NAME_BYTES} bytes (the name becomes part of file names)`
        : undefined,
    'use a shorter network name',
  );
const pluginFields = {
  type: conf
    .string()
    .pattern(/^[^/\\]+$/)
    .fix("set it to the plugin's binary name, without any '/'"),
  capabilities: conf
    .record(conf.bool().fix('capabilities map names to true or false'))
    .fix('use an object such as {"portMappings": true}')
    .optional(),
  ipam: conf
    .object({
      type: conf.string().min(1).fix('name the IPAM plugin, e.g. "host-local"').optional(),
    })
    .fix('use an object such as {"type": "host-local", ...}')
    .optional(),
  dns: dnsSchema.optional(),
};
const attachments = conf
  .array(
    conf
      .object({
        containerID: conf.string().fix("give the attachment's container ID as a string"),
        ifname: conf.string().fix("give the attachment's interface name as a string"),
      })
      .fix('use objects such as {"containerID": "abc", "ifname": "eth0"}'),
  )
  .fix('use a list of {"containerID", "ifname"} objects')
  .optional();

/**
 * The request config envelope (what every plugin reads on stdin); plugin fields are the plugin's.
 * `type` is optional here, as in the Go skel, which only requires `name`.
 */
const netConfSchema = conf.object({
  ...pluginFields,
  type: pluginFields.type.optional(),
  cniVersion: versionField.optional(),
  cniVersions: versionsField.optional(),
  name: nameField,
  runtimeConfig: conf.json().fix('use an object keyed by capability name').optional(),
  args: conf.json().fix('use an object such as {"cni": {...}}').optional(),
  prevResult: conf.json().fix("pass the previous plugin's result object").optional(),
  disableCheck: boolishField.optional(),
  disableGC: boolishField.optional(),
  'cni.dev/valid-attachments': attachments,
  'cni.dev/attachments': attachments,
});

/** A network configuration list (.conflist). */
const confListSchema = conf.object({
  cniVersion: versionField.optional(),
  cniVersions: versionsField.optional(),
  name: nameField,
  disableCheck: boolishField.optional(),
  disableGC: boolishField.optional(),
  loadOnlyInlinedPlugins: boolishField.optional(),
  plugins: conf
    .array(conf.object(pluginFields).fix('each plugin is an object with at least a "type"'))
    .min(1)
    .fix('list at least one plugin object, e.g. [{"type": "bridge"}]')
    .optional(),
});

/**
 * Decodes JSON text that must hold an object (a config, a VERSION answer, a NAD's spec.config):
 * CniError 6 naming `what` for bad JSON (the text quoted in details) or for any other JSON value.
 */
export function decodeJsonObject(bytes: string | Uint8Array, what: string): Record<string, unknown> {
  const text = typeof bytes === 'string' ? bytes : new TextDecoder().decode(bytes);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `error decoding ${what}: not valid JSON (${(e as Error).message})`,
      text.length > 200 ? `${text.slice(0, 200)}...` : text,
    );
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new CniError(
      ErrorCode.DecodingFailure,
      `error decoding ${what}: must be a JSON object, got ${v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v}`,
    );
  }
  return v as Record<string, unknown>;
}

/** Reads a JSON bool or the strings "true"/"false" (any case), as libcni accepts. */
function boolish(v: unknown): boolean {
  return v === true || (typeof v === 'string' && v.toLowerCase() === 'true');
}

/**
 * Parses a single plugin's request config (stdin). Code 6 for undecodable JSON, 7 for an invalid
 * config; messages name the JSON path, the bad value and the fix. A prevResult is parsed with its
 * own version (the config's when it has none) and converted to the current result type.
 */
export function parseNetConf(bytes: string | Uint8Array): NetConf {
  const obj = decodeJsonObject(bytes, 'network config');
  // Validation only: the config keeps the values as they came (ctx.config is the wire NetConf).
  netConfSchema.parse(obj, { label: 'invalid network config' });
  const conf = obj as NetConf;
  if (typeof obj.cniVersion !== 'string' || obj.cniVersion === '') conf.cniVersion = '0.1.0';
  if (obj.prevResult !== undefined) {
    const prev = parseResult(obj.prevResult, conf.cniVersion, {
      what: 'prevResult',
      code: ErrorCode.InvalidNetworkConfig,
      label: 'invalid network config: ',
    });
    conf.prevResult = toCurrentResult(prev);
  }
  return conf;
}

/**
 * Parses a network configuration list like libcni: `cniVersions` entries newer than the SDK are
 * dropped and the highest remaining becomes `cniVersion`; `disableCheck`, `disableGC` and
 * `loadOnlyInlinedPlugins` accept bools or "true"/"false"; `plugins` must be non-empty when given.
 */
export function parseNetConfList(bytes: string | Uint8Array): NetConfList {
  const obj = decodeJsonObject(bytes, 'network configuration list');
  confListSchema.parse(obj, { label: 'invalid network configuration list' });
  const raw = obj;
  let cniVersion = typeof raw.cniVersion === 'string' ? raw.cniVersion : '';
  const cniVersions = Array.isArray(raw.cniVersions) ? (raw.cniVersions as string[]) : undefined;
  if (cniVersions) {
    const notNewer = (v: string) => {
      try {
        return compareVersions(v, CURRENT_VERSION) <= 0;
      } catch {
        return false;
      }
    };
    const candidates = cniVersions.filter(notNewer);
    if (cniVersion && notNewer(cniVersion)) candidates.push(cniVersion);
    candidates.sort(compareVersions);
    cniVersion = candidates.at(-1) ?? '';
  }
  const loadOnlyInlinedPlugins = boolish(raw.loadOnlyInlinedPlugins);
  if (raw.plugins === undefined && loadOnlyInlinedPlugins) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      'invalid network configuration list: plugins: missing while loadOnlyInlinedPlugins is true; add the plugins or set loadOnlyInlinedPlugins to false',
    );
  }
  const list: NetConfList = {
    cniVersion,
    name: raw.name as string,
    disableCheck: boolish(raw.disableCheck),
    disableGC: boolish(raw.disableGC),
    loadOnlyInlinedPlugins,
    plugins: ((raw.plugins as PluginConf[] | undefined) ?? []).map((p) => ({ ...p })),
    raw,
  };
  if (cniVersions) list.cniVersions = cniVersions;
  return list;
}

/** Wraps a single-plugin config as a one-plugin list (libcni's ConfListFromConf). */
export function confListFromConf(conf: NetConf | PluginConf): NetConfList {
  const { name, cniVersion, type } = conf;
  // A plugin may run without "type" (the Go skel does not read it), but a runtime finds the
  // plugin by it: refuse here, as libcni's ConfFromBytes does, before anything is exec'd.
  if (typeof type !== 'string' || type === '')
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `invalid network config: type: ${type === undefined ? 'missing' : `${JSON.stringify(type)} is not a plugin name`}; a runtime runs the plugin that "type" names: set it to the plugin binary's name, e.g. "bridge"`,
    );
  return {
    cniVersion: typeof cniVersion === 'string' ? cniVersion : '',
    name: typeof name === 'string' ? name : '',
    disableCheck: false,
    disableGC: false,
    loadOnlyInlinedPlugins: false,
    plugins: [{ ...conf, type }],
    raw: { cniVersion, name, plugins: [conf] },
  };
}

/**
 * Whether the config asks for IPAM: an `ipam` block with a type. `"ipam": {}` (or an empty type)
 * means an interface without addresses, as the reference plugins read it (`IPAM.Type != ""`).
 */
export function ipamConfigured(config: { ipam?: { type?: unknown } | undefined }): boolean {
  const t = config.ipam?.type;
  return t !== undefined && t !== null && t !== '';
}

/**
 * The GC attachments of a config (`cni.dev/valid-attachments`, else the older `cni.dev/attachments`),
 * in the SDK's casing; undefined when the config carries neither.
 */
export function validAttachments(config: Record<string, unknown>): Attachment[] | undefined {
  const v = config['cni.dev/valid-attachments'] ?? config['cni.dev/attachments'];
  if (!Array.isArray(v)) return undefined;
  return (v as AttachmentJson[]).map((a) => ({ containerId: a.containerID, ifname: a.ifname }));
}

/** Attachments in the wire casing, for `cni.dev/valid-attachments`. */
export function attachmentsJson(list: readonly Attachment[]): AttachmentJson[] {
  return list.map((a) => ({ containerID: a.containerId, ifname: a.ifname }));
}

/** True when `conf` names a version this SDK knows (after "" → 0.1.0). */
export function isKnownConfigVersion(conf: { cniVersion?: string }): boolean {
  return normalizeVersion(conf.cniVersion) !== undefined;
}
