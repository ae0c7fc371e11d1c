// Kubernetes events about a pod, as client-go's event recorder posts them (core/v1 Event, POSTed
// to /api/v1/namespaces/<ns>/events): the same name scheme, involvedObject, source and
// timestamps, so `kubectl describe pod` shows cni-kit's events exactly as it shows multus's.
import type { Pod } from './client.js';

/** The object an event is about (core/v1 ObjectReference, fields in the API's order). */
export interface ObjectReference {
  kind: string;
  namespace?: string;
  name: string;
  uid?: string;
  apiVersion: string;
  resourceVersion?: string;
}

/** A core/v1 Event with the fields client-go's recorder fills in. */
export interface CoreEvent {
  kind: 'Event';
  apiVersion: 'v1';
  metadata: { name: string; namespace: string };
  involvedObject: ObjectReference;
  reason: string;
  message: string;
  source: { component: string; host?: string };
  /** RFC 3339, whole seconds (Kubernetes' metav1.Time). */
  firstTimestamp: string;
  lastTimestamp: string;
  count: number;
  type: 'Normal' | 'Warning';
  eventTime: null;
  reportingComponent: string;
  reportingInstance: string;
}

/** Nanoseconds since the epoch for the event name (client-go: `<object>.<hex UnixNano>`). */
function unixNanos(now: Date): bigint {
  const subMs = process.hrtime.bigint() % 1_000_000n;
  return BigInt(now.getTime()) * 1_000_000n + subMs;
}

/**
 * An event about `pod`, as client-go's recorder builds it for a component (multus: "multus"):
 * type Normal or Warning, a CamelCase reason, and a message.
 */
export function podEvent(
  pod: Pod,
  type: 'Normal' | 'Warning',
  reason: string,
  message: string,
  component: string,
  now: Date = new Date(),
): CoreEvent {
  const namespace = pod.metadata.namespace || 'default';
  const ref: ObjectReference = { kind: 'Pod', namespace, name: pod.metadata.name, apiVersion: 'v1' };
  if (pod.metadata.uid) ref.uid = pod.metadata.uid;
  if (pod.metadata.resourceVersion) ref.resourceVersion = pod.metadata.resourceVersion;
  const t = `${now.toISOString().slice(0, 19)}Z`;
  return {
    kind: 'Event',
    apiVersion: 'v1',
    metadata: { name: `${pod.metadata.name}.${unixNanos(now).toString(16)}`, namespace },
    involvedObject: ref,
    reason,
    message,
    source: { component },
    firstTimestamp: t,
    lastTimestamp: t,
    count: 1,
    type,
    eventTime: null,
    reportingComponent: component,
    reportingInstance: '',
  };
}
