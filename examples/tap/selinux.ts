// The tap under an SELinux context, as the reference makes it: the context is set as the exec label
// of the calling thread (/proc/thread-self/attr/exec), and `ip tuntap add` is exec'd from that
// thread while it is inside the container netns, so the device is created by a process running in
// that context. The thread's label is cleared again before anything else runs on it.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { NetlinkError, withNetns } from 'cni-kit/netlink';
import type { LabeledTapCreator, TapSpec } from './plugin.js';

const IP_PATHS = ['/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip'];

/** The `ip` invocations that make `spec` (tuntap add, then mtu and MAC). */
export function tapCommands(spec: TapSpec): string[][] {
  const add = ['tuntap', 'add', 'mode', 'tap', 'name', spec.name];
  if (spec.multiQueue) add.push('multi_queue');
  if (spec.owner !== undefined) add.push('user', String(spec.owner));
  if (spec.group !== undefined) add.push('group', String(spec.group));
  const set: string[] = [];
  if (spec.mtu !== undefined) set.push('mtu', String(spec.mtu));
  if (spec.mac !== undefined) set.push('address', spec.mac);
  return set.length ? [add, ['link', 'set', 'dev', spec.name, ...set]] : [add];
}

/** Options for `labeledTapCreator`; the path is a parameter so tests can watch what is written. */
export interface LabeledTapOptions {
  /** Where the thread's exec label is written; default /proc/thread-self/attr/exec. */
  attrPath?: string | undefined;
  /** The `ip` binary; default the first of /usr/sbin, /sbin, /usr/bin, /bin that has it. */
  ipPath?: string | undefined;
}

/** The default `createLabeledTap`: needs the native netlink path (the FFI package) to enter the netns. */
export function labeledTapCreator(opts: LabeledTapOptions = {}): LabeledTapCreator {
  const attr = opts.attrPath ?? '/proc/thread-self/attr/exec';
  return async (netns, spec, context) => {
    const ip = opts.ipPath ?? IP_PATHS.find((p) => existsSync(p)) ?? 'ip';
    await withNetns(netns, () => {
      writeFileSync(attr, context);
      try {
        for (const [i, args] of tapCommands(spec).entries()) {
          const r = spawnSync(ip, args, { encoding: 'utf8' });
          if (r.status === 0) continue;
          const text = `${r.stderr ?? ''}${r.error ? String(r.error) : ''}`.trim();
          // The device is not ours yet when the first command fails (exclusive create), so only
          // a later failure removes it.
          if (i > 0) spawnSync(ip, ['link', 'del', 'dev', spec.name]);
          const exists = i === 0 && /Device or resource busy/.test(text);
          throw new NetlinkError(
            exists ? 'EEXIST' : 'EIO',
            `ip ${args.join(' ')} under ${context}`,
            netns,
            text,
          );
        }
      } finally {
        writeFileSync(attr, '');
      }
    });
  };
}
