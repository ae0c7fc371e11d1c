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
import { ALL_VERSIONS, CniError, type PluginContext, pluginMain, type Result, type Route } from 'cni-kit';

interface DebugConf {
  recordFile?: string;
  ips?: string[];
  gateway?: string;
  routes?: Route[];
  fail?: { code: number; msg: string; details?: string };
  throw?: string;
}

function record(ctx: PluginContext<DebugConf>): void {
  const c = ctx.config;
  if (c.fail) throw new CniError(c.fail.code, c.fail.msg, c.fail.details);
  if (c.throw) throw new Error(c.throw);
  if (!c.recordFile) return;
  const env = Object.fromEntries(Object.entries(ctx.env).filter(([k]) => k.startsWith('CNI_')));
  appendFileSync(c.recordFile, `${JSON.stringify({ command: ctx.command, env, config: c })}\n`);
}

pluginMain<DebugConf>({
  about: 'debug: records its input and returns a result built from its config',
  supportedVersions: ALL_VERSIONS,
  add(ctx) {
    record(ctx);
    const c = ctx.config;
    const prev: Result = c.prevResult ?? { cniVersion: '1.1.0' };
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
      ...((c.dns ?? prev.dns) ? { dns: c.dns ?? prev.dns } : {}),
    };
  },
  del: record,
  check: record,
  gc: record,
  status: record,
});
