// Black-box fuzz of the link plugins (issue 11, Deliver): bridge, ptp, macvlan, ipvlan, vlan and
// host-device exec'd from dist/bin in real namespaces under a node netns of the test's own, with
// mostly-valid configs, mutations and odd environments. Invariants and knobs (CNI_KIT_FUZZ_RUNS
// for the bench's long run, CNI_KIT_FUZZ_CASE to replay a printed case): test/helpers/fuzz-flows.ts.
import { fuzzSuite } from '../helpers/fuzz-suite.js';

fuzzSuite('fuzz links', ['bridge', 'ptp', 'macvlan', 'ipvlan', 'vlan', 'host-device'], {
  flows: ['lifecycle', 'lifecycle', 'netns-gone', 'del-only'],
  budgetMs: 9000,
  mutated: 0.4,
});
