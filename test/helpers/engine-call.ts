// Calls one of our plugin binaries on a container netns with a chosen netlink engine (the
// CNI_KIT_NETLINK switch), as the per-engine integration files of single-interface plugins do.
import { pluginDir } from './mode.js';
import { BIN_DIR, type Exec, execPlugin } from './plugin.js';

export type Engine = 'native' | 'iproute2';

/**
 * A caller of our `type` binary (from pluginDir(): dist/bin, or daemon shims) as CNI_IFNAME
 * `ifname` with `engine`: each call's conf goes over `base` (cniVersion, name, type, ...), and the
 * container ID is read at call time, so a file may number its containers.
 */
export function engineCaller(opts: {
  type: string;
  engine: Engine;
  ifname: string;
  base: object;
  containerId: () => string;
}): (cmd: string, path: string, conf: object, extra?: Record<string, string>) => Exec {
  return (cmd, path, conf, extra = {}) =>
    execPlugin(
      `${pluginDir()}${opts.type}`,
      {
        CNI_COMMAND: cmd,
        CNI_CONTAINERID: opts.containerId(),
        CNI_NETNS: path,
        CNI_IFNAME: opts.ifname,
        CNI_PATH: BIN_DIR,
        CNI_KIT_NETLINK: opts.engine,
        ...extra,
      },
      JSON.stringify({ ...opts.base, ...conf }),
    );
}
