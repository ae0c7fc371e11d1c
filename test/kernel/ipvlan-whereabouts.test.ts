// ipvlan l2 with whereabouts (file store) on a real kernel, ours and Go's side by side
// (ipvlan-suite.ts): the GKE multus guide's ipvlan + whereabouts network. The modes themselves are
// covered with host-local (ipvlan.test.ts); whereabouts does not depend on them.
import { ipvlanSuite } from './ipvlan-suite.js';

ipvlanSuite('whereabouts', ['l2']);
