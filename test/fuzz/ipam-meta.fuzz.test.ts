// Black-box fuzz of the IPAM binaries (host-local, static, whereabouts on its file store) and of
// loopback, tuning (chained after an interface the harness makes), flannel (with a subnet.env of
// the test's own), multus (inline delegates, no Kubernetes) and debug, exec'd from dist/bin in real
// namespaces under a node netns of the test's own. Invariants and knobs: test/helpers/fuzz-flows.ts.
import { fuzzSuite } from '../helpers/fuzz-suite.js';

fuzzSuite(
  'fuzz ipam+meta',
  ['host-local', 'static', 'whereabouts', 'loopback', 'tuning', 'flannel', 'multus', 'debug'],
  {
    flows: ['lifecycle', 'lifecycle', 'netns-gone', 'del-only'],
    budgetMs: 7000,
    etcd: true,
    mutated: 0.4,
  },
);
