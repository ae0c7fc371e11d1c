import type { AsyncLocalStorage } from 'node:async_hooks';
import { Console } from 'node:console';
import { EventEmitter } from 'node:events';

// Stdout is the protocol channel of a plugin: the runtime parses exactly one JSON document from
// it. A stray console.log in a handler (or in a library it calls) would corrupt it, so while
// plugin code runs, console.* and process.stdout.write are routed to a line sink (the call's
// stderr log). Two modes:
//  - a plugin binary (pluginMain) is one call per process: everything printed while the guard is
//    installed goes to that call's sink, with no per-call bookkeeping;
//  - in-process calls (runPlugin from tests or a long-lived server) may overlap, so which call a
//    write belongs to comes from the async context (AsyncLocalStorage), and code outside any call
//    is left alone. On Node 20 async context tracking costs a few microseconds per promise, so it
//    is set up only on the first in-process call, never in a plugin binary.
/** Receives the redirected output, one line at a time (without the newline). */
export type LineSink = (line: string) => void;

/** Where one guarded call's output goes. */
interface Route {
  /** Made on the first console call of the route: most calls never print. */
  console(): Console;
  stream: LineStream;
}

/** The console methods that print (to stdout or stderr); all of them go to the sink. */
const METHODS = [
  'log',
  'info',
  'debug',
  'warn',
  'error',
  'trace',
  'dir',
  'dirxml',
  'table',
  'group',
  'groupCollapsed',
  'groupEnd',
  'count',
  'countReset',
  'time',
  'timeEnd',
  'timeLog',
  'assert',
] as const;
type Method = (typeof METHODS)[number];
type Fn = (...args: unknown[]) => unknown;

interface SavedState {
  console: Record<Method, Fn>;
  stdoutDescriptor: PropertyDescriptor | undefined;
  /** The stream whose `write` was replaced, and what it had as an own `write` before. */
  patched?: { stream: NodeJS.WriteStream; own: PropertyDescriptor | undefined; write: Fn };
}

/**
 * The guard's state. It lives on a registered global symbol rather than in module variables: a
 * daemon loads several plugin bundles, each with its own copy of the SDK, and their guards must
 * patch and restore console.* as one, or one copy would restore what another still needs.
 */
interface GuardState {
  /** The in-process mode's context, made on first use. */
  routes: AsyncLocalStorage<Route> | undefined;
  /** The plugin binary's one call: set by guardProcess, it takes every write while installed. */
  processRoute: Route | undefined;
  active: number;
  saved: SavedState | undefined;
}
const G: GuardState = (() => {
  const key = Symbol.for('cni-kit.stdout-guard.v1');
  const slot = globalThis as Record<symbol, GuardState | undefined>;
  slot[key] ??= { routes: undefined, processRoute: undefined, active: 0, saved: undefined };
  return slot[key];
})();

function contextRoutes(): AsyncLocalStorage<Route> {
  if (!G.routes) {
    const { AsyncLocalStorage: Als } = process.getBuiltinModule('node:async_hooks');
    G.routes = new Als<Route>();
  }
  return G.routes;
}

/** Where a write made now goes: the process's call, the current in-process call, or nowhere. */
const currentRoute = (): Route | undefined => G.processRoute ?? G.routes?.getStore();

/**
 * A line-buffering stream for a Console: complete lines go to `sink` as they are written
 * (synchronously, so output keeps its order with the SDK's own log lines); `flush` sends the rest.
 * An EventEmitter with `write` is all a Console needs; node:stream would cost a plugin ~1 ms of
 * start-up.
 */
class LineStream extends EventEmitter {
  private pending = '';
  constructor(private readonly sink: LineSink) {
    super();
  }
  write(chunk: unknown): boolean {
    this.pending += typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8');
    let nl = this.pending.indexOf('\n');
    while (nl >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      this.deliver(line);
      nl = this.pending.indexOf('\n');
    }
    return true;
  }
  flush(): void {
    if (this.pending !== '') this.deliver(this.pending);
    this.pending = '';
  }
  /** The sink runs outside the guard, so a sink that itself logs to the console cannot loop. */
  private deliver(line: string): void {
    if (G.processRoute || !G.routes) {
      // The sink may itself use the console: deliver it with the guard out of the way.
      const route = G.processRoute;
      G.processRoute = undefined;
      try {
        this.sink(line);
      } finally {
        G.processRoute = route;
      }
      return;
    }
    G.routes.exit(() => this.sink(line));
  }
}

/** process.stdout.write while guarded: the current call's sink, else the real write. */
function guardedWrite(stream: NodeJS.WriteStream, realWrite: Fn, args: unknown[]): boolean {
  const route = currentRoute();
  if (!route) return realWrite.apply(stream, args) as boolean;
  const [chunk, encodingOrCb, cb] = args;
  const encoding = typeof encodingOrCb === 'string' ? (encodingOrCb as BufferEncoding) : 'utf8';
  const text =
    typeof chunk === 'string'
      ? encoding === 'utf8'
        ? chunk
        : Buffer.from(chunk, encoding).toString('utf8')
      : Buffer.from(chunk as Uint8Array).toString('utf8');
  route.stream.write(text);
  const done = typeof encodingOrCb === 'function' ? encodingOrCb : cb;
  if (typeof done === 'function') process.nextTick(done as () => void);
  return true;
}

function install(): void {
  const original = {} as Record<Method, Fn>;
  for (const m of METHODS) {
    const real = console[m] as Fn;
    original[m] = real;
    console[m] = function (this: unknown, ...args: unknown[]) {
      const route = currentRoute();
      return route ? (route.console()[m] as Fn)(...args) : real.apply(console, args);
    } as never;
  }
  // process.stdout is built on first access (which costs a plugin start-up time), so the patch of
  // its write() happens inside the getter, only if something asks for the stream.
  const stdoutDescriptor = Object.getOwnPropertyDescriptor(process, 'stdout');
  const state: SavedState = { console: original, stdoutDescriptor };
  G.saved = state;
  const getReal = stdoutDescriptor?.get;
  if (!getReal) return;
  Object.defineProperty(process, 'stdout', {
    configurable: true,
    enumerable: stdoutDescriptor.enumerable ?? true,
    get() {
      const stream = getReal.call(process) as NodeJS.WriteStream;
      if (!state.patched && G.saved === state) {
        const own = Object.getOwnPropertyDescriptor(stream, 'write');
        const realWrite = stream.write as Fn;
        state.patched = { stream, own, write: realWrite };
        Object.defineProperty(stream, 'write', {
          configurable: true,
          writable: true,
          value(this: NodeJS.WriteStream, ...args: unknown[]) {
            return guardedWrite(this, realWrite, args);
          },
        });
      }
      return stream;
    },
  });
}

function uninstall(): void {
  const state = G.saved;
  if (!state) return;
  G.saved = undefined;
  for (const m of METHODS) console[m] = state.console[m] as never;
  if (state.stdoutDescriptor) Object.defineProperty(process, 'stdout', state.stdoutDescriptor);
  if (state.patched) {
    const { stream, own } = state.patched;
    if (own) Object.defineProperty(stream, 'write', own);
    else delete (stream as { write?: unknown }).write;
  }
}

/**
 * Runs `fn` with everything it prints through `console.*` or `process.stdout.write` sent to `sink`
 * line by line (stdout stays free for the one JSON document); restores both once no guarded call
 * is running. A partial last line is flushed when `fn` settles.
 */
export async function withStdoutGuard<T>(sink: LineSink, fn: () => Promise<T> | T): Promise<T> {
  // Inside a plugin binary everything already goes to the process's one call.
  if (G.processRoute) return await fn();
  const route = newRoute(sink);
  if (G.active++ === 0) install();
  try {
    return await contextRoutes().run(route, fn);
  } finally {
    route.stream.flush();
    if (--G.active === 0) uninstall();
  }
}

function newRoute(sink: LineSink): Route {
  const stream = new LineStream(sink);
  // A Console over the same stream keeps console.* and write() output in order.
  const out = stream as unknown as NodeJS.WritableStream;
  let made: Console | undefined;
  const console = () => {
    made ??= new Console({ stdout: out, stderr: out, colorMode: false });
    return made;
  };
  return { console, stream };
}

/**
 * The plugin binary's guard (pluginMain: one call per process): from now until the process exits,
 * everything printed with console.* or process.stdout.write goes to `sink`. `flush` sends a
 * partial last line.
 */
export function guardProcess(sink: LineSink): { flush(): void } {
  const route = newRoute(sink);
  if (G.active++ === 0) install();
  G.processRoute = route;
  return { flush: () => route.stream.flush() };
}

/**
 * Writes to the real stdout even while a guard is installed: the SDK's own output (the result or
 * error JSON) goes through here.
 */
export function realStdoutWrite(chunk: Uint8Array, done: () => void): void {
  const state = G.saved;
  const stream = (state?.stdoutDescriptor?.get?.call(process) ?? process.stdout) as NodeJS.WriteStream;
  const patched = state?.patched;
  if (patched && patched.stream === stream) {
    // The write the stream had before the guard replaced it.
    patched.write.call(stream, chunk, () => done());
    return;
  }
  stream.write(chunk, () => done());
}
