// esbuild plugin: resolves `cni-kit` and `cni-kit/<layer>` to this checkout's source, as the
// package's exports map resolves them to dist/ for users.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const src = fileURLToPath(new URL('../src/', import.meta.url));

/** Bundles the checkout's own cni-kit into a plugin binary. */
export const cniKitSource = {
  name: 'cni-kit-source',
  setup(b) {
    b.onResolve({ filter: /^cni-kit(\/[a-z0-9]+)?$/ }, (args) => ({
      path: join(
        src,
        args.path === 'cni-kit' ? 'index.ts' : `${args.path.slice('cni-kit/'.length)}/index.ts`,
      ),
    }));
  },
};
