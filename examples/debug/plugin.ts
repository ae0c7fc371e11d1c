// debug: records what it received and answers with a result built from its config.
// Used to test pluginMain end to end and to see what a runtime sends.
//
// Config fields (besides name/type/cniVersion):
//   recordFile  append one JSON line per call {command, env, config} to this file
//   ips         addresses for the result, e.g. ["10.1.0.5/24"]; "gateway" goes to those of its family
//   routes, dns copied into the result
//   fail        {code, msg, details?}: every command fails with this CNI error
//   throw       a message: every command throws a plain Error (shows code 999)
import { appendFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import {
  CniError,
  conf,
  ErrorCode,
  type Infer,
  type PluginContext,
  type PluginSpec,
  type Result,
} from 'cni-kit';
import { ipFamily } from 'cni-kit/spec';

/** The debug plugin's own config fields. */
export const debugConfig = conf.object({
  recordFile: conf.string().optional(),
  ips: conf.array(conf.cidr()).optional(),
  gateway: conf.ip().optional(),
  routes: conf.array(conf.object({ dst: conf.cidr(), gw: conf.ip().optional() })).optional(),
  fail: conf.object({ code: conf.int(1), msg: conf.string(), details: conf.string().optional() }).optional(),
  throw: conf.string().optional(),
});

/** The debug plugin's config, parsed. */
export type DebugConf = Infer<typeof debugConfig>;

function record(ctx: PluginContext<DebugConf>): void {
  const c = ctx.conf;
  if (c.fail) throw new CniError(c.fail.code, c.fail.msg, c.fail.details);
  if (c.throw) throw new Error(c.throw);
  if (!c.recordFile) return;
  // A relative path would land in whatever directory the runtime happened to exec the plugin from.
  if (!isAbsolute(c.recordFile))
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `recordFile: ${JSON.stringify(c.recordFile)} is not an absolute path; give the file's full path`,
    );
  const env = Object.fromEntries(Object.entries(ctx.env).filter(([k]) => k.startsWith('CNI_')));
  try {
    appendFileSync(c.recordFile, `${JSON.stringify({ command: ctx.command, env, config: ctx.config })}\n`);
  } catch (err) {
    throw new CniError(
      ErrorCode.IOFailure,
      `recordFile: cannot append to ${JSON.stringify(c.recordFile)}: ${CniError.from(err).message}`,
    );
  }
}

/** The debug plugin: records each call and answers ADD with a result built from its config. */
export function debugPlugin(): PluginSpec<DebugConf> {
  return {
    about: 'debug: records its input and returns a result built from its config',
    config: debugConfig,
    add(ctx) {
      record(ctx);
      const c = ctx.conf;
      const prev: Result = ctx.config.prevResult ?? { cniVersion: '1.1.0' };
      const interfaces = [...(prev.interfaces ?? []), { name: ctx.ifname, sandbox: ctx.netns }];
      const idx = interfaces.length - 1;
      const gwFamily = c.gateway ? ipFamily(c.gateway) : undefined;
      const ips = [
        ...(prev.ips ?? []),
        ...(c.ips ?? []).map((address) => ({
          interface: idx,
          address,
          // The gateway goes only to addresses of its own family, as the header says.
          ...(c.gateway && ipFamily(address) === gwFamily ? { gateway: c.gateway } : {}),
        })),
      ];
      const dns = ctx.config.dns ?? prev.dns;
      return {
        cniVersion: '1.1.0',
        interfaces,
        ips,
        routes: [...(prev.routes ?? []), ...(c.routes ?? [])],
        ...(dns ? { dns } : {}),
      };
    },
    del: record,
    check: record,
    gc: record,
    status: record,
  };
}
