// What `npm test` and `npm run demo` do first on a fresh clone, so they can be the first commands a
// user types: install the Debian packages of scripts/debian-packages that are missing (as root, where
// apt-get exists), and the npm dependencies from the lockfile when node_modules is missing. Node
// built-ins only: nothing is installed yet when this runs.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Packages whose probe (a command on PATH, or an absolute path) is missing. */
function missingPackages() {
  const has = (probe) =>
    probe.startsWith('/') ? existsSync(probe) : spawnSync('sh', ['-c', `command -v ${probe}`]).status === 0;
  return readFileSync(join(root, 'scripts', 'debian-packages'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(/\s+/))
    .filter(([, probe]) => !has(probe))
    .map(([pkg]) => pkg);
}

function isSymlink(path) {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function must(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}`);
}

/** Installs what is missing; prints what it does and why it cannot when it cannot. */
export function setup() {
  const pkgs = missingPackages();
  if (pkgs.length > 0) {
    const canApt = process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v apt-get']).status === 0;
    if (canApt) {
      console.log(`setup: installing Debian packages ${pkgs.join(' ')}`);
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      // firewalld's package enables firewalld.service and starts it where systemd runs: masked
      // first, so it neither takes over this machine's firewall now nor at boot (the tests run a
      // firewalld of their own on a private bus). The package's scripts leave an admin's mask alone.
      const unit = '/etc/systemd/system/firewalld.service';
      if (pkgs.includes('firewalld') && !existsSync(unit) && !isSymlink(unit)) {
        mkdirSync('/etc/systemd/system', { recursive: true });
        symlinkSync('/dev/null', unit);
      }
      must('apt-get', ['update', '-qq'], { env });
      must('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { env });
    } else {
      console.log(
        `setup: missing Debian packages ${pkgs.join(' ')} (install them as root; tests that need them skip or fail)`,
      );
    }
  }
  if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
    console.log('setup: installing the npm dependencies from package-lock.json (npm ci)');
    must('npm', ['ci', '--no-audit', '--no-fund']);
  }
}
