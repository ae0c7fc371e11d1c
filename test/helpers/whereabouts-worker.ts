// A child process for the whereabouts concurrency and crash tests (bundled by the test with esbuild):
// runs ADDs (and, in churn mode, DELs) against the configured store and reports each finished
// operation on stdout, so a test that SIGKILLs it knows exactly which operations completed.
import { createWhereaboutsAllocator } from '../../src/ipam/whereabouts/index.js';
import { openKubeApi } from '../../src/k8s/connect.js';

async function main(): Promise<void> {
  const config = JSON.parse(process.env.WB_CONFIG ?? '{}');
  const prefix = process.env.WB_ID ?? 'w';
  const count = Number(process.env.WB_COUNT ?? '1000000');
  const churn = process.env.WB_CHURN === '1';
  const alloc = createWhereaboutsAllocator(config, {
    fsync: process.env.WB_FSYNC !== '0',
    kube: openKubeApi,
  });
  const out = (s: string) => process.stdout.write(`${s}\n`);
  const live: string[] = [];
  // Open the store (etcd connection, kubeconfig) before reporting ready, so a test's kill timing
  // lands inside allocations rather than inside start-up.
  await alloc.release({ containerId: `${prefix}-warmup`, ifname: 'eth0' });
  out('ready');
  if (process.env.WB_WAIT === '1') {
    // Benches start every worker at once: wait for one line on stdin.
    await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
    process.stdin.destroy(); // a flowing stdin would keep the process alive after the last ADD
  }
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    if (churn && live.length > 0 && Math.random() < 0.35) {
      const id = live.splice(Math.floor(Math.random() * live.length), 1)[0]!;
      out(`deleting ${id}`); // from here the attachment's state is unknown until "del"
      await alloc.release({ containerId: id, ifname: 'eth0' });
      out(`del ${id}`);
      continue;
    }
    const id = `${prefix}-${i}`;
    try {
      // Like a container runtime, retry an ADD that failed with "try again later" (code 11).
      let r: Awaited<ReturnType<typeof alloc.allocate>> | undefined;
      for (let attempt = 0; !r; attempt++) {
        try {
          r = await alloc.allocate({ containerId: id, ifname: 'eth0', podRef: `ns/${id}` });
        } catch (err) {
          if ((err as { code?: number }).code !== 11 || attempt >= 10) throw err;
          await new Promise((res) => setTimeout(res, 10 + Math.random() * 50 * (attempt + 1)));
        }
      }
      out(`ok ${id} ${r.ips?.[0]?.address}`);
      live.push(id);
    } catch (err) {
      out(`err ${id} ${(err as Error).message}`);
      if (/no free address/.test((err as Error).message) && !churn) break;
    }
  }
  out(`done ${(performance.now() - t0).toFixed(1)}`);
  await alloc.close();
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  },
);
