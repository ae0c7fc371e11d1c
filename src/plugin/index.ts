// Public API of src/plugin; re-exported from the package root.
export {};
