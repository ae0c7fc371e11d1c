#!/usr/bin/env node
// Node installer of the cni-kit DaemonSets: copies the Node runtime and the chosen plugins into the
// host's CNI bin dir, keeps a kubeconfig for the service account up to date (bound tokens
// rotate), gives whereabouts its flat file (the Kubernetes store with that kubeconfig), and writes 00-multus.conf once the cluster network's config exists (multi-net-spec
// §6.1: no multus config before the default network is ready). Runs until the pod stops.
//
// Two layouts (--mode=exec|thick, or CNI_KIT_MODE):
// - exec (default, deploy/daemonset.yaml): each plugin is a Node bundle at <bin>/<type>; the runtime
//   execs a Node process per call.
// - thick (deploy/daemonset-thick.yaml, daemon mode): the Node bundles go to <bin>/cni-kit/<type>
//   (the directory `cni-kit daemon --plugins` loads) and the native shim goes to <bin>/<type>, its
//   trailer's fallback= rewritten to cni-kit/<type> so that the shim execs the bundle when no
//   daemon answers.
// --once: install the files and exit (an init container). --config-only: only the kubeconfig and
// 00-multus.conf loop (a sidecar next to the daemon). Plain Node with no imports from cni-kit:
// it runs from the image, which is also why it is one file past ~400 lines (the two layouts share
// the atomic copy, the trailer rewrite and the config loop).
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

const env = process.env;
const HOST_BIN = env.CNI_BIN_DIR ?? '/host/opt/cni/bin';
const HOST_CONF = env.CNI_CONF_DIR ?? '/host/etc/cni/net.d';
// Paths as the host (kubelet, containerd) sees them.
const HOST_VIEW_BIN = env.HOST_CNI_BIN_DIR ?? '/opt/cni/bin';
const HOST_VIEW_CONF = env.HOST_CNI_CONF_DIR ?? '/etc/cni/net.d';
const PLUGINS = (env.CNI_KIT_PLUGINS ?? 'multus whereabouts').split(/[\s,]+/).filter(Boolean);
const SA = env.SERVICE_ACCOUNT_DIR ?? '/var/run/secrets/kubernetes.io/serviceaccount';
const SOURCE = env.CNI_KIT_SOURCE_DIR ?? '/cni-kit/bin';
// The image's shims (dist/shim/<type>: the native client with its trailer), beside dist/bin.
const SHIM_SOURCE = env.CNI_KIT_SHIM_DIR ?? join(dirname(SOURCE), 'shim');
const NODE_NAME = 'cni-kit-node';
// The folder under the bin dir that holds the Node bundles in thick mode (protocol: fallback=cni-kit/<type>).
const BUNDLE_DIR = 'cni-kit';
const log = (m) => console.log(`${new Date().toISOString()} ${m}`);

const opts = parseArgs(process.argv.slice(2));

function parseArgs(argv) {
  const o = {
    mode: env.CNI_KIT_MODE || 'exec',
    once: env.CNI_KIT_INSTALL_ONCE === 'true',
    configOnly: env.CNI_KIT_CONFIG_ONLY === 'true',
  };
  for (const a of argv) {
    if (a.startsWith('--mode=')) o.mode = a.slice('--mode='.length);
    else if (a === '--once') o.once = true;
    else if (a === '--config-only') o.configOnly = true;
    else fail(`unknown argument ${JSON.stringify(a)}; use --mode=exec|thick, --once, --config-only`);
  }
  if (o.mode !== 'exec' && o.mode !== 'thick') {
    fail(
      `--mode (or CNI_KIT_MODE) is ${JSON.stringify(o.mode)}; use "exec" (a Node process per call) or "thick" (shims and the cni-kit daemon)`,
    );
  }
  if (o.once && o.configOnly) {
    fail('--once and --config-only exclude each other: --once installs and exits, --config-only never installs');
  }
  return o;
}

function fail(msg) {
  console.error(`install.mjs: ${msg}`);
  process.exit(2);
}

/**
 * Writes through a temp file in the same directory, flushed, then a rename: a running plugin or shim
 * keeps its old inode (never "text file busy", multus #1221), and a crash leaves the old file or the
 * new one, never half of one. A file that already has these bytes and this mode is left alone, so
 * a second run changes nothing. `data` is the content, or { file } to copy a file without reading it
 * into memory (the 100 MB Node runtime in a container with a small memory limit). Returns whether
 * it wrote.
 */
function install(path, data, mode) {
  const src = typeof data === 'object' && !Buffer.isBuffer(data) ? data.file : undefined;
  const bytes = src === undefined ? (typeof data === 'string' ? Buffer.from(data) : data) : undefined;
  if (sameFile(path, src ?? bytes, mode)) return false;
  const tmp = join(dirname(path), `.${path.slice(dirname(path).length + 1)}.cni-kit-tmp-${process.pid}`);
  try {
    if (src !== undefined) copyFileSync(src, tmp);
    const fd = openSync(tmp, src === undefined ? 'w' : 'r+', mode);
    try {
      if (bytes) for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, mode);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return true;
}

/** Whether `path` is a regular file with this mode and these bytes (a Buffer, or a file's path), read in chunks. */
function sameFile(path, want, mode) {
  let st;
  try {
    st = statSync(path);
  } catch {
    return false;
  }
  if (!st.isFile() || (st.mode & 0o7777) !== mode) return false;
  if (Buffer.isBuffer(want)) return st.size === want.length && readFileSync(path).equals(want);
  if (statSync(want).size !== st.size) return false;
  const a = openSync(path, 'r');
  const b = openSync(want, 'r');
  try {
    const ba = Buffer.alloc(1 << 16);
    const bb = Buffer.alloc(1 << 16);
    for (;;) {
      const n = readSync(a, ba, 0, ba.length, null);
      const m = readSync(b, bb, 0, bb.length, null);
      if (n !== m || !ba.subarray(0, n).equals(bb.subarray(0, m))) return false;
      if (n === 0) return true;
    }
  } finally {
    closeSync(a);
    closeSync(b);
  }
}

/** Temp files an installer killed mid-write left behind (install() names them .<name>.cni-kit-tmp-<pid>). */
function removeStaleTemps(dir) {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir)) {
    if (/^\..+\.cni-kit-tmp-\d+$/.test(f)) rmSync(join(dir, f), { force: true });
  }
}

/** Makes the renames in a directory durable (a node that loses power keeps the new files). */
function syncDir(dir) {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The plugins to install: CNI_KIT_PLUGINS, where "all" means every bundle in the image. */
function selectedTypes() {
  if (!PLUGINS.includes('all')) return PLUGINS;
  return readdirSync(SOURCE)
    .filter((f) => {
      const path = join(SOURCE, f);
      if (!statSync(path).isFile()) return false;
      const head = readFileSync(path).subarray(0, 512).toString('utf8').split('\n');
      return head[1] === `// cni-kit plugin ${f}`;
    })
    .sort();
}

/** A plugin's bundle with its "#!/usr/bin/env node" pointed at our runtime: the host may have no node. */
function bundleFor(type) {
  const src = join(SOURCE, type);
  if (!existsSync(src)) throw new Error(`CNI_KIT_PLUGINS names ${type}, which this image does not have`);
  return readFileSync(src, 'utf8').replace(/^#!.*\n/, `#!${join(HOST_VIEW_BIN, NODE_NAME)}\n`);
}

/**
 * cni-kit build's sidecars: the heavy clients multus and whereabouts load on first use
 * (lib/<name>/index.cjs) and the FFI package koffi with its native binary (lib/koffi/ and
 * lib/node_modules/@koromix/...); then the package.json that keeps the extensionless bundles
 * CommonJS whatever lies above the bin dir.
 */
function installSidecars(dir, viewDir) {
  const lib = join(SOURCE, 'lib');
  if (existsSync(lib)) {
    const n = installTree(lib, join(dir, 'lib'));
    log(`installed ${join(viewDir, 'lib')} (${n} file(s) changed)`);
  }
  install(join(dir, 'package.json'), '{ "type": "commonjs" }\n', 0o644);
}

function installBinaries() {
  mkdirSync(HOST_BIN, { recursive: true });
  removeStaleTemps(HOST_BIN);
  install(join(HOST_BIN, NODE_NAME), { file: process.execPath }, 0o755);
  for (const p of selectedTypes()) {
    const wrote = install(join(HOST_BIN, p), bundleFor(p), 0o755);
    log(`${wrote ? 'installed' : 'unchanged'} ${join(HOST_VIEW_BIN, p)}`);
  }
  installSidecars(HOST_BIN, HOST_VIEW_BIN);
  syncDir(HOST_BIN);
}

// The shim's trailer (the issue 14 protocol): appended to the ELF file, within its last 4096 bytes.
const SHIM_MARK = '\n--cni-kit-shim--\n';
const SHIM_END = '--end--\n';

/** Splits a shim into its binary and its trailer's fields; an error names the file when it is no shim. */
function readTrailer(bytes, file) {
  // latin1: one char per byte, so offsets in the string are offsets in the file.
  const tail = bytes.subarray(Math.max(0, bytes.length - 4096)).toString('latin1');
  const at = tail.lastIndexOf(SHIM_MARK);
  if (at < 0 || !tail.endsWith(SHIM_END)) {
    throw new Error(
      `${file} has no cni-kit shim trailer; the image must be built with npm run build, which writes dist/shim/<type>`,
    );
  }
  const fields = {};
  for (const line of tail.slice(at + SHIM_MARK.length, tail.length - SHIM_END.length).split('\n')) {
    if (line === '') continue;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new Error(`${file}: shim trailer line ${JSON.stringify(line)} is not key=value`);
    fields[line.slice(0, eq)] = line.slice(eq + 1);
  }
  for (const k of ['type', 'fallback', 'version']) {
    if (fields[k] === undefined) throw new Error(`${file}: the shim trailer has no ${k}= line`);
  }
  return { base: bytes.subarray(0, bytes.length - (tail.length - at)), fields };
}

/** The shim with a new trailer: the old one cut at its marker, the new one appended. */
function withTrailer(base, f) {
  let text = `${SHIM_MARK}type=${f.type}\nfallback=${f.fallback}\nversion=${f.version}\n`;
  if (f.socket) text += `socket=${f.socket}\n`;
  const trailer = Buffer.from(`${text}${SHIM_END}`, 'latin1');
  if (trailer.length >= 4096) {
    throw new Error(`the shim trailer of ${f.type} would be ${trailer.length} bytes; it must stay under 4096`);
  }
  return Buffer.concat([base, trailer]);
}

/**
 * Thick mode: the Node bundles, their sidecars and package.json into <bin>/cni-kit/, then one shim
 * per plugin at <bin>/<type> whose trailer says fallback=cni-kit/<type>. Bundles go first, so a
 * shim on the host never names a bundle that is not there yet; each file is replaced by rename.
 */
function installThick() {
  const socket = env.CNI_KIT_SHIM_SOCKET;
  if (socket !== undefined && !socket.startsWith('/')) {
    throw new Error(
      `CNI_KIT_SHIM_SOCKET is ${JSON.stringify(socket)}; give the daemon socket as an absolute path (default /run/cni-kit/daemon.sock)`,
    );
  }
  const bundles = join(HOST_BIN, BUNDLE_DIR);
  const viewBundles = join(HOST_VIEW_BIN, BUNDLE_DIR);
  mkdirSync(bundles, { recursive: true });
  removeStaleTemps(HOST_BIN);
  removeStaleTemps(bundles);
  const types = selectedTypes();
  // Read and check every shim before touching the host: a bad image changes nothing.
  const shims = types.map((type) => {
    const src = join(SHIM_SOURCE, type);
    if (!existsSync(src)) {
      throw new Error(
        `CNI_KIT_PLUGINS names ${type}, but the image has no shim ${src} (npm run build writes dist/shim/<type>)`,
      );
    }
    const { base, fields } = readTrailer(readFileSync(src), src);
    if (fields.type !== type) throw new Error(`${src}: its trailer says type=${fields.type}, not ${type}`);
    return {
      type,
      bytes: withTrailer(base, {
        ...fields,
        fallback: `${BUNDLE_DIR}/${type}`,
        socket: socket ?? fields.socket,
      }),
    };
  });
  install(join(HOST_BIN, NODE_NAME), { file: process.execPath }, 0o755);
  for (const type of types) {
    const wrote = install(join(bundles, type), bundleFor(type), 0o755);
    log(`${wrote ? 'installed' : 'unchanged'} ${join(viewBundles, type)}`);
  }
  installSidecars(bundles, viewBundles);
  syncDir(bundles);
  for (const { type, bytes } of shims) {
    const wrote = install(join(HOST_BIN, type), bytes, 0o755);
    log(`${wrote ? 'installed' : 'unchanged'} ${join(HOST_VIEW_BIN, type)} (shim, fallback ${BUNDLE_DIR}/${type})`);
  }
  syncDir(HOST_BIN);
}

/** Copies a folder's files, each by rename (a plugin loading koffi.node keeps the old one); returns how many changed. */
function installTree(src, dst) {
  let n = 0;
  for (const e of readdirSync(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    if (e.isDirectory()) n += installTree(from, join(dst, e.name));
    // The build's stamps and temp files are of no use on the host.
    else if (e.isFile() && e.name !== 'stamp' && !e.name.endsWith('.tmp')) {
      mkdirSync(dst, { recursive: true });
      if (install(join(dst, e.name), { file: from }, statSync(from).mode & 0o111 ? 0o755 : 0o644)) n++;
    }
  }
  return n;
}

let lastKubeconfig = '';
function writeKubeconfig() {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) throw new Error('KUBERNETES_SERVICE_HOST is not set; run this in a pod');
  const server = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const kc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'local',
        cluster: { server, 'certificate-authority-data': readFileSync(join(SA, 'ca.crt')).toString('base64') },
      },
    ],
    users: [{ name: 'cni-kit', user: { token: readFileSync(join(SA, 'token'), 'utf8').trim() } }],
    contexts: [{ name: 'cni-kit', context: { cluster: 'local', user: 'cni-kit', namespace: 'kube-system' } }],
    'current-context': 'cni-kit',
  };
  const text = JSON.stringify(kc, null, 2);
  const sum = createHash('sha256').update(text).digest('hex');
  if (sum === lastKubeconfig) return;
  mkdirSync(join(HOST_CONF, 'multus.d'), { recursive: true, mode: 0o700 });
  install(join(HOST_CONF, 'multus.d', 'multus.kubeconfig'), text, 0o600);
  if (PLUGINS.includes('whereabouts') || PLUGINS.includes('all')) writeWhereaboutsFlatFile(text);
  lastKubeconfig = sum;
  log('kubeconfig written (service-account token refreshed)');
}

/**
 * whereabouts' flat file, where whereabouts (ours and upstream's) looks for the settings merged into
 * every IPAM config: the Kubernetes store with this kubeconfig. Without it a NAD such as
 * {"type":"whereabouts","range":...} has no store and ADD fails naming this file. An existing
 * whereabouts.conf is the admin's and is left alone; the kubeconfig beside it is kept fresh.
 */
function writeWhereaboutsFlatFile(kubeconfig) {
  const dir = join(HOST_CONF, 'whereabouts.d');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  install(join(dir, 'whereabouts.kubeconfig'), kubeconfig, 0o600);
  const flat = join(dir, 'whereabouts.conf');
  if (existsSync(flat)) return;
  const conf = {
    datastore: 'kubernetes',
    kubernetes: { kubeconfig: join(HOST_VIEW_CONF, 'whereabouts.d', 'whereabouts.kubeconfig') },
  };
  install(flat, `${JSON.stringify(conf, null, 2)}\n`, 0o600);
  log(`${join(HOST_VIEW_CONF, 'whereabouts.d', 'whereabouts.conf')} written (whereabouts: Kubernetes store)`);
}

function masterConf() {
  const files = readdirSync(HOST_CONF)
    .filter((f) => /\.(conf|conflist)$/.test(f) && !f.startsWith('00-multus'))
    .sort();
  return files[0];
}

let lastConf = '';
function writeMultusConf() {
  const file = masterConf();
  if (!file) return false;
  const master = JSON.parse(readFileSync(join(HOST_CONF, file), 'utf8'));
  const plugins = Array.isArray(master.plugins) ? master.plugins : [master];
  const capabilities = {};
  for (const p of plugins) for (const [k, v] of Object.entries(p.capabilities ?? {})) if (v) capabilities[k] = true;
  const conf = {
    cniVersion: master.cniVersion ?? '1.0.0',
    name: 'multus-cni-network',
    type: 'multus',
    kubeconfig: join(HOST_VIEW_CONF, 'multus.d', 'multus.kubeconfig'),
    clusterNetwork: join(HOST_VIEW_CONF, file),
    ...(Object.keys(capabilities).length ? { capabilities } : {}),
    ...(env.MULTUS_NAMESPACE_ISOLATION === 'true' ? { namespaceIsolation: true } : {}),
    ...(env.MULTUS_GLOBAL_NAMESPACES ? { globalNamespaces: env.MULTUS_GLOBAL_NAMESPACES } : {}),
    ...(env.MULTUS_READINESS_INDICATOR_FILE ? { readinessindicatorfile: env.MULTUS_READINESS_INDICATOR_FILE } : {}),
    ...(env.MULTUS_LOG_LEVEL ? { logLevel: env.MULTUS_LOG_LEVEL } : {}),
  };
  const text = JSON.stringify(conf, null, 2);
  if (text !== lastConf) {
    install(join(HOST_CONF, '00-multus.conf'), text, 0o600);
    lastConf = text;
    log(`00-multus.conf written; cluster network: ${file}`);
  }
  return true;
}

if (!opts.configOnly) {
  try {
    if (opts.mode === 'thick') installThick();
    else installBinaries();
  } catch (e) {
    fail(e.message);
  }
}
if (opts.once) {
  log(`${opts.mode} mode: files installed`);
  process.exit(0);
}
writeKubeconfig();
if (!writeMultusConf()) log(`waiting for the cluster network's config in ${HOST_VIEW_CONF}`);
const timer = setInterval(() => {
  try {
    writeKubeconfig();
    writeMultusConf();
  } catch (e) {
    log(`refresh failed: ${e.message}`);
  }
}, 10_000);
process.on('SIGTERM', () => {
  clearInterval(timer);
  // Leaving 00-multus.conf in place keeps pods starting during a rolling update; set
  // CLEANUP_ON_EXIT=true when removing cni-kit for good, so no stale config outlives the RBAC.
  if (env.CLEANUP_ON_EXIT === 'true') {
    rmSync(join(HOST_CONF, '00-multus.conf'), { force: true });
    rmSync(join(HOST_CONF, 'multus.d'), { recursive: true, force: true });
    rmSync(join(HOST_CONF, 'whereabouts.d', 'whereabouts.kubeconfig'), { force: true });
    log('removed 00-multus.conf and the kubeconfig');
  }
  process.exit(0);
});
