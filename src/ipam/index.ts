// Public API of src/ipam; re-exported from the package root.
export {};
