// ipvlan l2, l3 and l3s with host-local on a real kernel, ours and Go's side by side (ipvlan-suite.ts).
import { ipvlanSuite } from './ipvlan-suite.js';

ipvlanSuite('host-local');
