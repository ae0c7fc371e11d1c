// Public API of src/netlink; re-exported from the package root.
export {};
