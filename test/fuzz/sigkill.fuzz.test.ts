// SIGKILL at a random point of ADD (a runtime giving up on a slow plugin), then DEL: DEL exits 0
// and nothing is left in the node, the container or the data dirs (issue 11, Deliver; F8-F10).
// Configs are the documented ones (few mutations, runtime-like env): what varies is when the kill
// lands. The kill goes to the plugin's process group; what it exec'd may finish for a moment, then
// the harness kills whatever of it is left. Invariants and knobs: test/helpers/fuzz-flows.ts.
import { fuzzSuite } from '../helpers/fuzz-suite.js';

fuzzSuite(
  'fuzz sigkill',
  ['bridge', 'ptp', 'macvlan', 'host-device', 'host-local', 'whereabouts', 'tuning', 'flannel', 'multus'],
  {
    flows: ['sigkill'],
    budgetMs: 6000,
    etcd: true,
    mutated: 0.1,
    envOk: 30,
    rawWeight: 0,
  },
);
