#!/usr/bin/env node
// Node installer of the cni-kit DaemonSet: copies the Node runtime and the chosen plugins into the
// host's CNI bin dir, keeps a kubeconfig for the service account up to date (bound tokens
// rotate), gives whereabouts its flat file (the Kubernetes store with that kubeconfig), and writes 00-multus.conf once the cluster network's config exists (multi-net-spec
// §6.1: no multus config before the default network is ready). Runs until the pod stops.
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

const env = process.env;
const HOST_BIN = env.CNI_BIN_DIR ?? '/host/opt/cni/bin';
const HOST_CONF = env.CNI_CONF_DIR ?? '/host/etc/cni/net.d';
// Paths as the host (kubelet, containerd) sees them.
const HOST_VIEW_BIN = env.HOST_CNI_BIN_DIR ?? '/opt/cni/bin';
const HOST_VIEW_CONF = env.HOST_CNI_CONF_DIR ?? '/etc/cni/net.d';
const PLUGINS = (env.CNI_KIT_PLUGINS ?? 'multus whereabouts').split(/[\s,]+/).filter(Boolean);
const SA = env.SERVICE_ACCOUNT_DIR ?? '/var/run/secrets/kubernetes.io/serviceaccount';
const NODE_NAME = 'cni-kit-node';
const log = (m) => console.log(`${new Date().toISOString()} ${m}`);

/** Writes through a temp file and a rename: a running plugin keeps its old inode (no "text file busy"). */
function install(path, data, mode) {
  const tmp = `${path}.cni-kit-tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

function installBinaries() {
  mkdirSync(HOST_BIN, { recursive: true });
  install(join(HOST_BIN, NODE_NAME), readFileSync(process.execPath), 0o755);
  for (const p of PLUGINS) {
    const src = join(env.CNI_KIT_SOURCE_DIR ?? '/cni-kit/bin', p);
    if (!existsSync(src)) throw new Error(`CNI_KIT_PLUGINS names ${p}, which this image does not have`);
    // The bundles start with "#!/usr/bin/env node"; the host may have no node, so point at ours.
    const text = readFileSync(src, 'utf8').replace(/^#!.*\n/, `#!${join(HOST_VIEW_BIN, NODE_NAME)}\n`);
    install(join(HOST_BIN, p), text, 0o755);
    log(`installed ${join(HOST_VIEW_BIN, p)}`);
  }
  // cni-kit build's sidecars: the heavy clients multus and whereabouts load on first use
  // (lib/<name>/index.cjs) and the FFI package koffi with its native binary (lib/koffi/ and
  // lib/node_modules/@koromix/...); then the package.json that keeps the extensionless bundles
  // CommonJS whatever lies above the bin dir.
  const lib = join(env.CNI_KIT_SOURCE_DIR ?? '/cni-kit/bin', 'lib');
  if (existsSync(lib)) {
    installTree(lib, join(HOST_BIN, 'lib'));
    log(`installed ${join(HOST_VIEW_BIN, 'lib')}`);
  }
  install(join(HOST_BIN, 'package.json'), '{ "type": "commonjs" }\n', 0o644);
}

/** Copies a folder's files, each by rename (a plugin loading koffi.node keeps the old one). */
function installTree(src, dst) {
  for (const e of readdirSync(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    if (e.isDirectory()) installTree(from, join(dst, e.name));
    // The build's stamps and temp files are of no use on the host.
    else if (e.isFile() && e.name !== 'stamp' && !e.name.endsWith('.tmp')) {
      mkdirSync(dst, { recursive: true });
      install(join(dst, e.name), readFileSync(from), statSync(from).mode & 0o111 ? 0o755 : 0o644);
    }
  }
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
  if (PLUGINS.includes('whereabouts')) writeWhereaboutsFlatFile(text);
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

installBinaries();
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
