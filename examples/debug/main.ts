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
import {
  ALL_VERSIONS,
  CniError,
  conf,
  type Infer,
  type PluginContext,
  pluginMain,
  type Result,
} from 'cni-kit';

const debugConfig = conf.object({
  recordFile: conf.string().optional(),
  ips: conf.array(conf.cidr()).optional(),
  gateway: conf.ip().optional(),
  routes: conf.array(conf.object({ dst: conf.cidr(), gw: conf.ip().optional() })).optional(),
  fail: conf.object({ code: conf.int(1), msg: conf.string(), details: conf.string().optional() }).optional(),
  throw: conf.string().optional(),
});

type DebugConf = Infer<typeof debugConfig>;

function record(ctx: PluginContext<DebugConf>): void {
  const c = ctx.conf;
  if (c.fail) throw new CniError(c.fail.code, c.fail.msg, c.fail.details);
  if (c.throw) throw new Error(c.throw);
  if (!c.recordFile) return;
  const env = Object.fromEntries(Object.entries(ctx.env).filter(([k]) => k.startsWith('CNI_')));
  appendFileSync(c.recordFile, `${JSON.stringify({ command: ctx.command, env, config: ctx.config })}\n`);
}

pluginMain({
  about: 'debug: records its input and returns a result built from its config',
  supportedVersions: ALL_VERSIONS,
  config: debugConfig,
  add(ctx) {
    record(ctx);
    const c = ctx.conf;
    const prev: Result = ctx.config.prevResult ?? { cniVersion: '1.1.0' };
    const interfaces = [...(prev.interfaces ?? []), { name: ctx.ifname, sandbox: ctx.netns }];
    const idx = interfaces.length - 1;
    const ips = [
      ...(prev.ips ?? []),
      ...(c.ips ?? []).map((address) => ({
        interface: idx,
        address,
        ...(c.gateway ? { gateway: c.gateway } : {}),
      })),
    ];
    return {
      cniVersion: '1.1.0',
      interfaces,
      ips,
      routes: [...(prev.routes ?? []), ...(c.routes ?? [])],
      ...((ctx.config.dns ?? prev.dns) ? { dns: ctx.config.dns ?? prev.dns } : {}),
    };
  },
  del: record,
  check: record,
  gc: record,
  status: record,
});
