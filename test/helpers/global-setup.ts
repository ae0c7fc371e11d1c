// Builds the plugin binaries the tests exec (dist/bin/<type>) unless the caller already did
// (npm test builds first and sets CNI_KIT_BUILT=1).
import { execFileSync } from 'node:child_process';

export default function setup(): void {
  if (process.env.CNI_KIT_BUILT === '1') return;
  execFileSync('node', ['scripts/build-bins.mjs'], { stdio: 'inherit' });
}
