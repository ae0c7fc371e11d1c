// Kubernetes events about a pod, as client-go's event recorder posts them (core/v1 Event, POSTed
// to /api/v1/namespaces/<ns>/events): the same name scheme, involvedObject, source and
// timestamps, so `kubectl describe pod` shows cni-kit's events exactly as it shows multus's.
import type { CoreEvent, ObjectReference, Pod } from './client.js';

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
