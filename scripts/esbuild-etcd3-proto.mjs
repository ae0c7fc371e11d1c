// esbuild plugin: etcd3 loads its gRPC service definitions from ../proto/*.proto next to its own
// files at run time, which a single-file bundle does not have. This inlines the parsed definitions
// (as protobufjs JSON) into the bundle, so dist/bin/whereabouts can be copied alone.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

/** The esbuild plugin; add it to `plugins` when bundling anything that may import etcd3. */
export const etcd3ProtoPlugin = {
  name: 'etcd3-proto-inline',
  setup(build) {
    build.onLoad({ filter: /etcd3[\\/]lib[\\/]connection-pool\.js$/ }, (args) => {
      const protobuf = require(
        require.resolve('protobufjs', { paths: [dirname(require.resolve('@grpc/proto-loader'))] }),
      );
      const root = new protobuf.Root();
      root.loadSync(join(dirname(args.path), '..', 'proto', 'rpc.proto'), { keepCase: true });
      const json = JSON.stringify(root.toJSON());
      const src = readFileSync(args.path, 'utf8');
      const call = /\(0, proto_loader_1\.loadSync\)\(`\$\{__dirname\}\/\.\.\/proto\/rpc\.proto`,/;
      if (!call.test(src))
        throw new Error('etcd3-proto-inline: etcd3 changed how it loads rpc.proto; update the plugin');
      return { contents: src.replace(call, `(0, proto_loader_1.fromJSON)(${json},`), loader: 'js' };
    });
  },
};
