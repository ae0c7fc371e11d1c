// The kernel lane's virtual machine: Debian's kernel (linux-image-amd64) booted under qemu in software
// emulation, for the link kinds this machine's own kernel lacks (ipvlan, vlan, dummy, vrf, bridge VLAN
// filtering). Nothing is downloaded: the initramfs is built here from busybox-static and the installed
// kernel's modules, and the guest chroots into the host's own root, shared read-only over 9p with a
// tmpfs overlay on top, so node, iproute2, the built plugins and the Go reference plugins are the
// host's. One writable share carries the command in and its output and exit status out.
//
// The guest always powers off after the command; a watchdog kills qemu when it does not in time, and
// the temporary files (initramfs, the share) are removed in every case.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  constants,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';

/** Modules the guest loads before anything else: the 9p root, the overlay, then the link kinds. */
export const BOOT_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'];
export const LINK_MODULES = [
  'veth',
  'bridge',
  'macvlan',
  'ipvlan',
  '8021q',
  'dummy',
  'vrf',
  'vxlan',
  'ifb',
  'tun',
  'sch_tbf',
  'sch_ingress',
];
/** 9p over virtio carries at most this much per message in Debian 12's kernel (PAGE_SIZE * 125). */
const MSIZE = 512_000;

export interface VmTools {
  qemu: string;
  kernel: string;
  modules: string;
  busybox: string;
  cpio: string;
}

/** What the lane needs on this machine, or a sentence naming what is missing. */
export function findVmTools(): VmTools | string {
  const missing: string[] = [];
  const which = (cmd: string): string | undefined => {
    try {
      return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || undefined;
    } catch {
      return undefined;
    }
  };
  // CNI_KIT_QEMU and CNI_KIT_VM_KERNEL name another qemu binary or kernel image (its modules are
  // /lib/modules/<the version after "vmlinuz-">); the lane's own tests use them to check what a
  // machine without either sees.
  const qemuOverride = process.env.CNI_KIT_QEMU;
  const qemu = qemuOverride
    ? executable(qemuOverride)
      ? qemuOverride
      : undefined
    : which('qemu-system-x86_64');
  if (!qemu) missing.push('qemu-system-x86_64 (Debian package qemu-system-x86)');
  let kernel: string | undefined;
  let modules: string | undefined;
  try {
    // The newest installed Debian kernel whose module tree is present.
    const versions = process.env.CNI_KIT_VM_KERNEL
      ? [basename(process.env.CNI_KIT_VM_KERNEL).replace(/^vmlinuz-/, '')]
      : readdirSync('/boot')
          .filter((f) => /^vmlinuz-.*-amd64$/.test(f))
          .map((f) => f.slice('vmlinuz-'.length))
          .filter((v) => existsSync(`/lib/modules/${v}/modules.dep`))
          .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    const v = versions.at(-1);
    if (v) {
      kernel = process.env.CNI_KIT_VM_KERNEL ?? `/boot/vmlinuz-${v}`;
      modules = `/lib/modules/${v}`;
      readFileSync(kernel, { flag: 'r' }).subarray(0, 1);
      if (!existsSync(join(modules, 'modules.dep'))) modules = undefined;
    }
  } catch {
    kernel = undefined;
  }
  if (!kernel || !modules)
    missing.push('a Debian kernel image in /boot with its modules (linux-image-amd64)');
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) missing.push('busybox (Debian package busybox-static)');
  const cpio = which('cpio');
  if (!cpio) missing.push('cpio');
  if (missing.length > 0 || !qemu || !kernel || !modules || !busybox || !cpio)
    return `missing ${missing.join(', ')}`;
  return { qemu, kernel, modules, busybox, cpio };
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Every module `names` need, dependencies first, as paths relative to the module tree. */
export function moduleClosure(modulesDir: string, names: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of readFileSync(join(modulesDir, 'modules.dep'), 'utf8').split('\n')) {
    const [mod, rest] = line.split(':');
    if (!mod || rest === undefined) continue;
    deps.set(mod, rest.trim().split(/\s+/).filter(Boolean));
    byName.set(
      basename(mod)
        .replace(/\.ko(\.\w+)?$/, '')
        .replace(/-/g, '_'),
      mod,
    );
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (mod: string): void => {
    if (seen.has(mod)) return;
    seen.add(mod);
    for (const d of deps.get(mod) ?? []) visit(d);
    order.push(mod);
  };
  for (const n of names) {
    const mod = byName.get(n.replace(/-/g, '_'));
    if (mod) visit(mod); // built into this kernel when absent from the tree
  }
  return order;
}

/** Where the guest mounts a fresh tmpfs over the host's root (what tests write there stays in the VM). */
const GUEST_TMPFS = ['/run', '/tmp'];

/** Shell single quotes. */
const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The guest's /init: mount the host root, run the command chrooted, record its status, power off.
 * `keep` are host paths the command needs (its working directory): one under a path the guest
 * covers with tmpfs (a checkout in /tmp) is carried over that tmpfs.
 */
function initScript(cmdTimeoutS: number, keep: readonly string[] = []): string {
  const covered = keep.filter((p) => GUEST_TMPFS.some((t) => p === t || p.startsWith(`${t}/`)));
  const hold = covered.map(
    (p, i) => `mkdir -p /rw/keep${i} && mount -o bind ${shq(`/newroot${p}`)} /rw/keep${i}`,
  );
  const restore = covered.map(
    (p, i) => `mkdir -p ${shq(`/newroot${p}`)} && mount -o bind /rw/keep${i} ${shq(`/newroot${p}`)}`,
  );
  return `#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "cni-kit-vm: $*" > /dev/ttyS0; }
off() { sync; poweroff -f; echo o > /proc/sysrq-trigger; sleep 5; }
while read -r m args; do insmod "/lib/modules/$m" $args 2>/dev/null; done < /modules.order
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=${MSIZE},cache=loose,ro hostroot /lower || { say "mounting the host root failed"; off; }
mount -t tmpfs -o size=60% tmpfs /rw
mkdir -p /rw/upper /rw/work
if ! mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot; then
  say "no overlay over the 9p root: tmpfs on the written paths instead"
  mount --bind /lower /newroot
  for d in /var/lib/cni /var/lib/containers /root /home; do
    [ -d "/newroot$d" ] && mount -t tmpfs tmpfs "/newroot$d"
  done
fi
${hold.join('\n')}
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
${GUEST_TMPFS.map((t) => `mount -t tmpfs tmpfs /newroot${t}`).join('\n')}
${restore.join('\n')}
mount -t cgroup2 cgroup2 /newroot/sys/fs/cgroup 2>/dev/null
mkdir -p /newroot/run/cni-kit-vm /newroot/run/lock /newroot/run/netns
mount -t 9p -o trans=virtio,version=9p2000.L,msize=${MSIZE} out /newroot/run/cni-kit-vm || { say "mounting the result share failed"; off; }
say "up; running the command"
( timeout ${cmdTimeoutS} chroot /newroot /bin/sh -c 'sh /run/cni-kit-vm/run.sh > /run/cni-kit-vm/output 2>&1; echo $? > /run/cni-kit-vm/status' ) || true
[ -f /newroot/run/cni-kit-vm/status ] || echo 124 > /newroot/run/cni-kit-vm/status
say "command exited $(cat /newroot/run/cni-kit-vm/status)"
sync
umount /newroot/run/cni-kit-vm
off
`;
}

const MODPROBE_WRAPPER = `#!/bin/sh
# Requests from the kernel (module autoload) use the host's modprobe and module tree.
exec chroot /newroot /sbin/modprobe "$@"
`;

/** Builds the initramfs (gzip'd newc cpio) into `dir`; returns its path. */
export function buildInitramfs(
  tools: VmTools,
  dir: string,
  cmdTimeoutS: number,
  keep: readonly string[] = [],
): string {
  const root = join(dir, 'root');
  for (const d of ['bin', 'sbin', 'proc', 'sys', 'dev', 'lib/modules', 'etc'])
    mkdirSync(join(root, d), { recursive: true });
  copyFileSync(tools.busybox, join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  const applets = [
    'sh',
    'mount',
    'umount',
    'insmod',
    'mkdir',
    'chroot',
    'poweroff',
    'cat',
    'echo',
    'sleep',
    'sync',
    'timeout',
  ];
  for (const a of applets) symlinkSync('busybox', join(root, 'bin', a));
  writeFileSync(join(root, 'sbin/modprobe'), MODPROBE_WRAPPER, { mode: 0o755 });
  const mods = moduleClosure(tools.modules, [...BOOT_MODULES, ...LINK_MODULES]);
  for (const m of mods) {
    mkdirSync(join(root, 'lib/modules', dirname(m)), { recursive: true });
    copyFileSync(join(tools.modules, m), join(root, 'lib/modules', m));
  }
  // No dummy0/ifb0 of the modules' own in the guest's root namespace.
  const params: Record<string, string> = { 'dummy.ko': 'numdummies=0', 'ifb.ko': 'numifbs=0' };
  const order = mods.map((m) => `${m} ${params[basename(m)] ?? ''}`.trim());
  writeFileSync(join(root, 'modules.order'), `${order.join('\n')}\n`);
  writeFileSync(join(root, 'init'), initScript(cmdTimeoutS, keep), { mode: 0o755 });
  const out = join(dir, 'initramfs.cpio.gz');
  execFileSync('sh', [
    '-c',
    `cd "${root}" && find . | ${tools.cpio} -o -H newc --quiet | gzip -1 > "${out}"`,
  ]);
  rmSync(root, { recursive: true, force: true });
  return out;
}

export interface VmRun {
  /** Shell text run by /bin/sh in the guest, chrooted into the host's root. */
  script: string;
  /** Working directory for the script (a host path, same in the guest). */
  cwd: string;
  env?: Record<string, string>;
  /** Wall-clock limit for the whole VM, boot included; qemu is killed after it. */
  timeoutMs: number;
  /** The guest's own limit on the command, after which it records 124 and powers off; default 30 s under `timeoutMs`. */
  guestTimeoutS?: number;
  memoryMiB?: number;
  cpus?: number;
  /** Called with each chunk of the guest's console as it arrives. */
  onConsole?: (chunk: string) => void;
  /** Called with the guest command's output as it grows (read from the share while it runs). */
  onOutput?: (chunk: string) => void;
  /** Paths relative to the share the caller wants back (read before the share is removed). */
  collect?: readonly string[];
}

export interface VmResult {
  /** The command's exit status; null when the guest never reported one (crash, hang, timeout). */
  status: number | null;
  /** Its stdout and stderr. */
  output: string;
  /** The guest's serial console (kernel and init messages). */
  console: string;
  timedOut: boolean;
  ms: number;
  /** From qemu's start to the guest's init running the command (undefined when it never got there). */
  bootMs: number | undefined;
  /** `collect`ed files that existed, by path. */
  files: Record<string, string>;
}

/** The last `n` lines of the console, for failure messages. */
export function consoleTail(r: Pick<VmResult, 'console'>, n = 40): string {
  return r.console.split('\n').slice(-n).join('\n');
}

/** Why a run that reported no status failed, with the console's tail (the lane prints this). */
export function vmFailure(r: VmResult, timeoutMs: number): string {
  const why = r.timedOut
    ? `the VM did not finish within ${timeoutMs / 1000} s and was killed`
    : 'the guest reported no result';
  return `${why} (${(r.ms / 1000).toFixed(1)} s). Console tail:\n${consoleTail(r)}`;
}

const live = new Set<ChildProcess>();
let exitHook = false;
function killOnExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
}

/** Boots the VM, runs `run.script` in it, and returns when qemu is gone. */
export async function runInVm(run: VmRun): Promise<VmResult> {
  const tools = findVmTools();
  if (typeof tools === 'string') throw new Error(`the kernel lane cannot run: ${tools}`);
  const t0 = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'cni-kit-vm-'));
  try {
    const share = join(dir, 'share');
    mkdirSync(share);
    const cmdTimeoutS = run.guestTimeoutS ?? Math.max(10, Math.floor(run.timeoutMs / 1000) - 30);
    const initrd = buildInitramfs(tools, dir, cmdTimeoutS, [resolve(run.cwd)]);
    const env = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/root',
      TERM: 'dumb',
      CI: '1',
      CNI_KIT_IN_VM: '1',
      ...run.env,
    };
    writeFileSync(
      join(share, 'run.sh'),
      [
        ...Object.entries(env).map(([k, v]) => `export ${k}=${shq(v)}`),
        `cd ${shq(run.cwd)} || exit 125`,
        run.script,
        '',
      ].join('\n'),
    );
    const args = [
      '-accel',
      'tcg',
      '-cpu',
      'max',
      '-smp',
      String(run.cpus ?? 2),
      '-m',
      String(run.memoryMiB ?? 768),
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-serial',
      'stdio',
      '-monitor',
      'none',
      '-no-reboot',
      '-kernel',
      tools.kernel,
      '-initrd',
      initrd,
      '-append',
      'console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init',
      '-virtfs',
      'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
      '-virtfs',
      `local,path=${share},mount_tag=out,security_model=none`,
    ];
    const child = spawn(tools.qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    killOnExit();
    let consoleText = '';
    let bootMs: number | undefined;
    const started = Date.now();
    const onData = (b: Buffer): void => {
      const s = b.toString('utf8');
      consoleText += s;
      if (bootMs === undefined && consoleText.includes('cni-kit-vm: up')) bootMs = Date.now() - started;
      run.onConsole?.(s);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    let timedOut = false;
    const watchdog = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, run.timeoutMs);
    let shown = 0;
    const outPath = join(share, 'output');
    const follow = run.onOutput
      ? setInterval(() => {
          try {
            const text = readFileSync(outPath, 'utf8');
            if (text.length > shown) {
              run.onOutput?.(text.slice(shown));
              shown = text.length;
            }
          } catch {
            // not written yet
          }
        }, 500)
      : undefined;
    const exit = await new Promise<number | null>((resolve) => {
      child.once('exit', (code) => resolve(code));
      child.once('error', (e) => {
        consoleText += `\nqemu did not start: ${e.message}\n`;
        resolve(null);
      });
    });
    clearTimeout(watchdog);
    if (follow) clearInterval(follow);
    live.delete(child);
    if (exit === null && child.exitCode === null && !child.killed) child.kill('SIGKILL');
    const read = (p: string): string | undefined => {
      try {
        return readFileSync(join(share, p), 'utf8');
      } catch {
        return undefined;
      }
    };
    const output = read('output') ?? '';
    if (run.onOutput && output.length > shown) run.onOutput(output.slice(shown));
    const statusText = read('status')?.trim();
    const files: Record<string, string> = {};
    for (const p of run.collect ?? []) {
      const t = read(p);
      if (t !== undefined) files[p] = t;
    }
    return {
      status: statusText && /^\d+$/.test(statusText) ? Number(statusText) : null,
      output,
      console: consoleText,
      timedOut,
      ms: Date.now() - t0,
      bootMs,
      files,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
