// One call from a kubeconfig path to a ready client, for plugins.
// Also keeps the bundled binaries working: client.ts and kubeconfig.ts are reachable from a
// dynamic import (the whereabouts Kubernetes store), so esbuild wraps them in lazy initialisers,
// and with "sideEffects": false the initialiser calls placed in the src/k8s barrel are dropped.
// A module that imports them directly and is itself used runs those initialisers.
import { httpKubeClient, type KubeClient, type KubeClientOptions } from './client.js';
import { loadKubeconfig } from './kubeconfig.js';

/** Loads a kubeconfig and returns an API client for its current context. */
export async function connectKube(kubeconfig: string, opts: KubeClientOptions = {}): Promise<KubeClient> {
  return httpKubeClient(await loadKubeconfig(kubeconfig), opts);
}
