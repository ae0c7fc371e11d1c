// ipvlan l2, l3 and l3s with whereabouts (file store) on a real kernel, ours and Go's side by side
// (ipvlan-suite.ts): the GKE multus guide's ipvlan + whereabouts network.
import { ipvlanSuite } from './ipvlan-suite.js';

ipvlanSuite('whereabouts');
