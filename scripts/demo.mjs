#!/usr/bin/env node
// `npm run demo`: builds the plugins, then drives the debug example through VERSION, ADD and DEL at
// cniVersion 1.1.0 and 0.2.0 exactly as a runtime would (env + stdin in, JSON out), printing what
// came back. (The multus demo replaces this once the meta plugins land.)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const build = spawnSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);

const bin = `${root}dist/bin/debug`;
const call = (command, cniVersion) => {
  const env = {
    PATH: process.env.PATH,
    CNI_COMMAND: command,
    CNI_CONTAINERID: 'demo-container',
    CNI_NETNS: '/var/run/netns/demo',
    CNI_IFNAME: 'eth0',
    CNI_PATH: `${root}dist/bin`,
  };
  const conf = {
    cniVersion,
    name: 'demo-net',
    type: 'debug',
    ips: ['10.22.0.5/24', 'fd00:22::5/64'],
    gateway: '10.22.0.1',
    routes: [{ dst: '0.0.0.0/0', gw: '10.22.0.1' }],
    dns: { nameservers: ['10.22.0.1'], search: ['demo.local'] },
  };
  const r = spawnSync(bin, [], {
    env,
    input: command === 'VERSION' ? '' : JSON.stringify(conf),
    encoding: 'utf8',
  });
  console.log(`\n$ CNI_COMMAND=${command} dist/bin/debug   (cniVersion ${cniVersion}) -> exit ${r.status}`);
  console.log(r.stdout.trim() || '(no output: success)');
  if (r.stderr.trim()) console.log(`stderr: ${r.stderr.trim()}`);
  return r.status;
};

let failed = 0;
failed |= call('VERSION', '1.1.0');
for (const v of ['1.1.0', '0.2.0']) {
  failed |= call('ADD', v);
  failed |= call('DEL', v);
}
process.exit(failed ? 1 : 0);
