// Public API of src/delegate; re-exported from the package root.
export {};
