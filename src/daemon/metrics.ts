// Prometheus metrics of the daemon, in the text exposition format (version 0.0.4). Three metric
// families need no client library: a counter map, a histogram with fixed buckets and a gauge.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labels = (l: Record<string, string>) =>
  `{${Object.entries(l)
    .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
    .join(',')}}`;

interface Histogram {
  labels: Record<string, string>;
  counts: number[];
  sum: number;
  count: number;
}

/** The daemon's counters; `render()` is what `/metrics` serves. */
export class DaemonMetrics {
  private readonly calls = new Map<string, { labels: Record<string, string>; n: number }>();
  private readonly errors = new Map<string, { labels: Record<string, string>; n: number }>();
  private readonly durations = new Map<string, Histogram>();
  private readonly refused = new Map<string, { labels: Record<string, string>; n: number }>();
  inflight = 0;
  /** More metric families in the exposition format (thick multus: its caches), appended to render(). */
  readonly extra: Array<() => string> = [];

  /** Records one finished call; `code` is the CNI error code of a failed call. */
  observe(plugin: string, command: string, seconds: number, code?: number): void {
    const base = { plugin, command };
    const key = `${plugin}\0${command}`;
    bump(this.calls, key, base);
    if (code !== undefined) bump(this.errors, `${key}\0${code}`, { ...base, code: String(code) });
    let h = this.durations.get(key);
    if (!h) {
      h = { labels: base, counts: BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.durations.set(key, h);
    }
    BUCKETS.forEach((b, i) => {
      if (seconds <= b) (h as Histogram).counts[i] = ((h as Histogram).counts[i] ?? 0) + 1;
    });
    h.sum += seconds;
    h.count += 1;
  }

  /** Records a request refused before any plugin ran (busy, shutting down, malformed, too large). */
  refuse(reason: string): void {
    bump(this.refused, reason, { reason });
  }

  render(): string {
    const out: string[] = [];
    const counter = (
      name: string,
      help: string,
      m: Map<string, { labels: Record<string, string>; n: number }>,
    ) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
      for (const { labels: l, n } of m.values()) out.push(`${name}${labels(l)} ${n}`);
    };
    counter('cni_kit_daemon_calls_total', 'CNI calls served, by plugin and command.', this.calls);
    counter(
      'cni_kit_daemon_call_errors_total',
      'CNI calls that ended in a CNI error, by plugin, command and error code.',
      this.errors,
    );
    counter(
      'cni_kit_daemon_requests_refused_total',
      'Requests refused before a plugin ran, by reason.',
      this.refused,
    );
    const name = 'cni_kit_daemon_call_duration_seconds';
    out.push(`# HELP ${name} Wall time of CNI calls, by plugin and command.`, `# TYPE ${name} histogram`);
    for (const h of this.durations.values()) {
      BUCKETS.forEach((b, i) => {
        out.push(`${name}_bucket${labels({ ...h.labels, le: String(b) })} ${h.counts[i]}`);
      });
      out.push(`${name}_bucket${labels({ ...h.labels, le: '+Inf' })} ${h.count}`);
      out.push(`${name}_sum${labels(h.labels)} ${h.sum}`);
      out.push(`${name}_count${labels(h.labels)} ${h.count}`);
    }
    out.push(
      '# HELP cni_kit_daemon_inflight_calls CNI calls running now.',
      '# TYPE cni_kit_daemon_inflight_calls gauge',
      `cni_kit_daemon_inflight_calls ${this.inflight}`,
    );
    const mem = process.memoryUsage();
    out.push(
      '# HELP process_resident_memory_bytes Resident memory size in bytes.',
      '# TYPE process_resident_memory_bytes gauge',
      `process_resident_memory_bytes ${mem.rss}`,
    );
    for (const more of this.extra) out.push(more().trimEnd());
    return `${out.join('\n')}\n`;
  }
}

function bump(
  m: Map<string, { labels: Record<string, string>; n: number }>,
  key: string,
  l: Record<string, string>,
): void {
  const e = m.get(key);
  if (e) e.n += 1;
  else m.set(key, { labels: l, n: 1 });
}

/** Serves `/metrics` over TCP; resolves with the port bound (0 picks a free one) and a closer. */
export async function serveMetrics(
  metrics: DaemonMetrics,
  port: number,
  address = '127.0.0.1',
): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    if ((req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    const body = metrics.render();
    res.writeHead(200, {
      'Content-Type': 'text/plain; version=0.0.4; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(body)),
    });
    res.end(body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
