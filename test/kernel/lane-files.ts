// The kernel lane's list (scripts/kernel-lane.ts runs it; vitest.config.ts and scripts/test.mjs read
// it too): each entry is a test file and the test names (a regular expression over vitest's full
// names, describe blocks included) that run in the VM, the cases that need a link kind only the VM's
// kernel has. Add an entry when a file gains such cases; every describe block of test/kernel says
// "on the real kernel".
//
// `laneOnly` marks a file with nothing to run anywhere else: vitest.config.ts leaves it out of every
// run outside the VM (npm test's exec and daemon phases, `npx vitest run` by hand), which then says
// so instead of reporting its cases as skipped.

export interface LaneEntry {
  file: string;
  tests: string;
  laneOnly?: true;
}

export const KERNEL_LANE: readonly LaneEntry[] = [
  // Longest first (as measured in the lane), so that neither of vitest's two workers idles at the end.
  {
    file: 'test/integration/conform-ours.test.ts',
    tests: '(ipvlan|vlan) \\+ host-local, where the kernel has',
  },
  { file: 'test/kernel/ipvlan.test.ts', tests: 'on the real kernel', laneOnly: true },
  { file: 'test/kernel/ipvlan-whereabouts.test.ts', tests: 'on the real kernel', laneOnly: true },
  { file: 'test/kernel/vlan.test.ts', tests: 'on the real kernel', laneOnly: true },
  { file: 'test/integration/dummy-tap-conform.test.ts', tests: 'dummy \\+ host-local, where the kernel has' },
  { file: 'test/interop/vrf-chaining.test.ts', tests: 'vrf chained under libcni' },
  { file: 'test/kernel/bridge-vlan.test.ts', tests: 'on the real kernel', laneOnly: true },
  // Not lane-only: its memory-model case runs everywhere.
  { file: 'test/kernel/ipvlan-mode.test.ts', tests: 'on the real kernel' },
  { file: 'test/integration/vrf-plugin.test.ts', tests: 'vrf binary .*enslaves the interface' },
  { file: 'test/integration/plugins-main.test.ts', tests: 'ipvlan and vlan on the real kernel' },
  { file: 'test/integration/dummy-plugin.test.ts', tests: 'dummy binary .*where the kernel has dummy links' },
  {
    file: 'test/integration/netlink.shared.test.ts',
    tests:
      'netlink shared suite .*linux.*(ipvlan links|\\bvlan links|bridge VLANs|dummy link|VRF|macvlan links on a host parent)',
  },
  // Not lane-only: the link-kind probe's cases run on every root machine.
  { file: 'test/kernel/netlink-kinds.test.ts', tests: 'on the real kernel' },
  {
    file: 'test/integration/plugins-bridge.test.ts',
    tests: 'bridge binary .*vlan: the port is an access port',
  },
  {
    file: 'test/integration/netlink.native-tc.test.ts',
    tests: 'a VLAN-filtering bridge: add/del on ports and self',
  },
];

/** The files no run outside the VM includes (vitest.config.ts excludes them there). */
export const LANE_ONLY_FILES: readonly string[] = KERNEL_LANE.filter((e) => e.laneOnly).map((e) => e.file);

/** Whether this process runs inside the kernel lane's VM (test/helpers/vm.ts sets it in the guest). */
export const IN_VM = process.env.CNI_KIT_IN_VM === '1';
