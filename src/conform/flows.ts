// The per-version flows: the lifecycle (ADD, CHECK, DEL, DEL twice), DEL without ADD, DEL after
// the netns is gone, concurrent ADDs (with GC at 1.1.0) and STATUS. Each flow snapshots what it
// may change before its first ADD and compares after its last DEL; a check whose precondition
// failed is skipped with the reason, not failed again.
import { existsSync } from 'node:fs';
import { versionAtLeast as atLeast } from '../spec/index.js';
import { type Call, type Container, fail, type RunContext, skipped } from './context.js';
import { expectQuietSuccess, leftoverDetail, said } from './judge.js';
import { inNetns } from './netns.js';
import { describeExit, mustRun, runProc } from './proc.js';
import { checkResult, isObj, type Json, resultAddresses, summarizeResult } from './validate.js';

interface AddOutcome {
  call: Call;
  /** Why the ADD did not produce a valid result; empty when it did. */
  problems: string[];
}

async function doAdd(run: RunContext, c: Container, version: string): Promise<AddOutcome> {
  const call = await run.call({
    command: 'ADD',
    container: c,
    stdin: run.configFor(version, run.prevFor(c, version) ?? null),
  });
  c.attached = true;
  c.version = version;
  let problems: string[];
  if (call.exitCode !== 0) problems = [`${describeExit(call)}: ${said(call)}`];
  else if (call.jsonError !== undefined) problems = [call.jsonError];
  else problems = checkResult(call.json ?? null, version);
  if (!problems.length && call.json !== undefined) c.result = call.json;
  return { call, problems };
}

/** DEL as libcni sends it: prevResult is the ADD result from 0.4.0 on (none before, or without one). */
async function doDel(run: RunContext, c: Container, version: string, netns?: string): Promise<Call> {
  const prev = atLeast(version, '0.4.0') && c.result !== undefined ? c.result : null;
  const call = await run.call({
    command: 'DEL',
    container: c,
    ...(netns ? { netns } : {}),
    stdin: run.configFor(version, prev),
  });
  if (call.exitCode === 0) c.attached = false;
  return call;
}

async function doCheck(run: RunContext, c: Container, version: string): Promise<Call> {
  return run.call({ command: 'CHECK', container: c, stdin: run.configFor(version, c.result ?? null) });
}

interface JAddrLink {
  ifname: string;
  address?: string;
  addr_info?: Array<{ local: string; prefixlen: number }>;
}

async function linksIn(netns: string | undefined): Promise<Map<string, JAddrLink>> {
  const [f, a] = inNetns(netns, 'ip', ['-j', 'addr', 'show']);
  const list = JSON.parse((await mustRun(f, a)) || '[]') as JAddrLink[];
  return new Map(list.map((l) => [l.ifname, l]));
}

/** The result's interfaces exist where it says, with its MACs and container addresses. */
async function addState(run: RunContext, c: Container, version: string): Promise<string> {
  if (c.result === undefined) throw skipped('no valid ADD result');
  if (!atLeast(version, '0.3.0')) throw skipped(`a ${version} result lists no interfaces`);
  const r = c.result as { interfaces?: Array<Record<string, unknown>>; ips?: Array<Record<string, unknown>> };
  const ifaces = r.interfaces ?? [];
  if (!ifaces.length) return 'the result lists no interfaces';
  const [inside, node] = await Promise.all([linksIn(c.netns), linksIn(run.s.nodeNetns)]);
  const problems: string[] = [];
  const seen: string[] = [];
  ifaces.forEach((i, n) => {
    const name = String(i.name);
    const where =
      i.sandbox === undefined || i.sandbox === '' ? 'node' : i.sandbox === c.netns ? 'container' : '';
    if (!where) return;
    const link = (where === 'node' ? node : inside).get(name);
    if (!link) {
      problems.push(`interfaces[${n}] ${name} is not in the ${where} netns`);
      return;
    }
    seen.push(`${name} (${where})`);
    if (typeof i.mac === 'string' && i.mac && link.address?.toLowerCase() !== i.mac.toLowerCase()) {
      problems.push(`interfaces[${n}] ${name}: mac ${i.mac}, the link has ${link.address}`);
    }
    if (where !== 'container') return;
    for (const ipc of r.ips ?? []) {
      if (ipc.interface !== n || typeof ipc.address !== 'string') continue;
      const has = (link.addr_info ?? []).some((a) => `${a.local}/${a.prefixlen}` === ipc.address);
      if (!has) problems.push(`${ipc.address} is not on ${name} in the container`);
    }
  });
  if (problems.length) throw fail(problems.join('; '));
  return `found ${seen.join(', ')}`;
}

/** ADD, CHECK, DEL, leftovers, DEL again, in one fresh container. Returns whether CHECK passed. */
export async function lifecycle(run: RunContext, version: string): Promise<boolean> {
  const c = await run.newContainer();
  let checkOk = false;
  try {
    const [node0, cont0, files0] = await Promise.all([run.snapshot(), run.snapshot(c), run.files()]);
    await run.step('add', version, async () => {
      const { call, problems } = await doAdd(run, c, version);
      if (problems.length) throw fail(problems.slice(0, 4).join('; '));
      return summarizeResult(call.json ?? null);
    });
    await run.step('add-state', version, () => addState(run, c, version));
    if (!atLeast(version, '0.4.0')) run.skip('check', version, 'CHECK arrived in 0.4.0');
    else
      checkOk = await run.step('check', version, async () => {
        if (c.result === undefined) throw skipped('no valid ADD result to pass as prevResult');
        return expectQuietSuccess(await doCheck(run, c, version), 'CHECK');
      });
    await run.step('del', version, async () => expectQuietSuccess(await doDel(run, c, version), 'DEL'));
    await run.step('leftovers', version, async () => {
      const [node1, cont1, files1] = await Promise.all([run.snapshot(), run.snapshot(c), run.files()]);
      const problems = run.leftovers([node0, node1], [files0, files1], [cont0, cont1]);
      if (problems.length) throw fail(leftoverDetail(problems));
      return 'nothing left in the node, the container or the data dirs';
    });
    await run.step('del-twice', version, async () =>
      expectQuietSuccess(await doDel(run, c, version), 'second DEL'),
    );
  } finally {
    await run.removeContainer(c);
  }
  return checkOk;
}

/** DEL for a container ID no ADD ever saw. */
export async function delWithoutAdd(run: RunContext, version: string): Promise<void> {
  await run.step('del-without-add', version, async () => {
    const c = await run.newContainer();
    try {
      return expectQuietSuccess(await doDel(run, c, version), 'DEL');
    } finally {
      await run.removeContainer(c);
    }
  });
}

async function nodeLinks(run: RunContext): Promise<Array<{ ifname: string; link_netnsid?: number }>> {
  const [f, a] = inNetns(run.s.nodeNetns, 'ip', ['-j', 'link', 'show']);
  const r = await runProc(f, a, { timeoutMs: 5000 });
  return JSON.parse(r.stdout || '[]') as Array<{ ifname: string; link_netnsid?: number }>;
}

/** Names of the node links whose peer lives in another netns (veths). */
async function peeredLinks(run: RunContext): Promise<Set<string>> {
  return new Set((await nodeLinks(run)).filter((l) => l.link_netnsid !== undefined).map((l) => l.ifname));
}

/** Waits until the kernel has destroyed those peers (netns teardown is asynchronous). */
async function settleNode(run: RunContext, peers: ReadonlySet<string>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (peers.size && Date.now() < deadline) {
    if (!(await nodeLinks(run)).some((l) => peers.has(l.ifname))) return;
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** ADD, delete the netns, DEL with the stale CNI_NETNS: exit 0 and nothing left on the node. */
export async function delNetnsGone(run: RunContext, version: string): Promise<void> {
  const c = await run.newContainer();
  const [node0, files0, peered0] = await Promise.all([run.snapshot(), run.files(), peeredLinks(run)]);
  const { call, problems } = await doAdd(run, c, version);
  const addFailed = call.exitCode !== 0 || call.jsonError !== undefined;
  if (addFailed) {
    await doDel(run, c, version).catch(() => undefined);
    await run.removeContainer(c);
    run.skip('del-netns-gone', version, `ADD failed: ${problems.join('; ')}`);
    run.skip('leftovers:netns-gone', version, 'ADD failed');
    return;
  }
  // Peered into the container by ADD (a bridge's host veth, the peer of a device moved in).
  const peers = new Set([...(await peeredLinks(run))].filter((n) => !peered0.has(n)));
  await run.removeContainer(c);
  await settleNode(run, peers);
  // A device ADD moved into the container (host-device) dies with the netns if it is virtual, and
  // so does its veth peer on the node: node links gone before DEL runs are the kernel's doing.
  const beforeDel = await run.snapshot();
  const goneWithNetns = new Set([...node0.links.keys()].filter((n) => !beforeDel.links.has(n)));
  await run.step('del-netns-gone', version, async () =>
    expectQuietSuccess(await doDel(run, c, version, c.netns), `DEL with CNI_NETNS ${c.netns} gone`),
  );
  await run.step('leftovers:netns-gone', version, async () => {
    const [node1, files1] = await Promise.all([run.snapshot(), run.files()]);
    const found = run.leftovers([node0, node1], [files0, files1], undefined, goneWithNetns);
    if (existsSync(c.netns)) {
      found.push(
        `a file at CNI_NETNS ${c.netns}: the netns was deleted before DEL and something created it again`,
      );
    }
    if (found.length) throw fail(leftoverDetail(found));
    return 'nothing left in the node or the data dirs';
  });
}

/** N ADDs at once, distinct addresses, GC (1.1.0), N DELs at once, nothing left. */
export async function concurrency(run: RunContext, version: string, checkOk: boolean): Promise<void> {
  const n = run.s.concurrency;
  const cs = await Promise.all(Array.from({ length: n }, () => run.newContainer()));
  try {
    const [node0, files0] = await Promise.all([run.snapshot(), run.files()]);
    const adds = await Promise.all(cs.map((c) => doAdd(run, c, version)));
    const ok = await run.step('concurrent-add', version, async () => {
      const bad = adds
        .map((a, i) => {
          if (a.call.exitCode !== 0) return `ADD #${i + 1}: ${describeExit(a.call)}: ${said(a.call)}`;
          if (a.call.jsonError !== undefined) return `ADD #${i + 1}: ${a.call.jsonError}`;
          return '';
        })
        .filter(Boolean);
      if (bad.length) throw fail(`${bad.length} of ${n} failed: ${bad.slice(0, 3).join('; ')}`);
      return `${n} ADDs at once succeeded`;
    });
    await run.step('concurrent-addresses', version, async () => {
      const ipam = run.s.config.ipam;
      if (!isObj(ipam as Json)) throw skipped('the config has no ipam');
      if ((ipam as Record<string, unknown>).type === 'static') {
        throw skipped('static IPAM hands out the configured addresses by design');
      }
      if (!ok) throw skipped('not every ADD succeeded');
      const owner = new Map<string, number>();
      const dups: string[] = [];
      adds.forEach((a, i) => {
        const addrs = resultAddresses(a.call.json ?? null);
        if (!addrs.length) dups.push(`ADD #${i + 1} returned no address`);
        for (const addr of addrs) {
          const j = owner.get(addr);
          if (j !== undefined) dups.push(`${addr} handed to ADD #${j + 1} and ADD #${i + 1}`);
          else owner.set(addr, i);
        }
      });
      if (dups.length) throw fail(dups.slice(0, 4).join('; '));
      return `${owner.size} distinct addresses`;
    });
    if (version === '1.1.0') await gcCheck(run, cs, checkOk);
    await run.step('concurrent-del', version, async () => {
      const dels = await Promise.all(cs.map((c) => doDel(run, c, version)));
      const bad = dels
        .map((d, i) => {
          try {
            expectQuietSuccess(d, `DEL #${i + 1}`);
            return '';
          } catch (e) {
            return (e as Error).message;
          }
        })
        .filter(Boolean);
      if (bad.length) throw fail(`${bad.length} of ${n} failed: ${bad.slice(0, 3).join('; ')}`);
      return `${n} DELs at once succeeded`;
    });
    await run.step('leftovers:concurrent', version, async () => {
      const [node1, files1] = await Promise.all([run.snapshot(), run.files()]);
      const found = run.leftovers([node0, node1], [files0, files1]);
      if (found.length) throw fail(leftoverDetail(found));
      return 'nothing left in the node or the data dirs';
    });
  } finally {
    await Promise.all(cs.map((c) => run.removeContainer(c)));
  }
}

/** GC keeping half the attachments: exit 0, no output, and the kept ones still pass CHECK. */
async function gcCheck(run: RunContext, cs: Container[], checkOk: boolean): Promise<void> {
  await run.step('gc', '1.1.0', async () => {
    const withResult = cs.filter((c) => c.result !== undefined);
    if (!withResult.length) throw skipped('no ADD succeeded');
    const valid = withResult.slice(0, Math.ceil(cs.length / 2));
    const attachments = valid.map((c) => ({ containerID: c.id, ifname: run.s.ifname }));
    const call = await run.call({
      command: 'GC',
      stdin: run.configFor('1.1.0', null, { 'cni.dev/valid-attachments': attachments }),
    });
    expectQuietSuccess(call, 'GC');
    if (!checkOk) return 'exit 0, no output (CHECK after GC not run: CHECK failed at 1.1.0)';
    const checks = await Promise.all(valid.map((c) => doCheck(run, c, '1.1.0')));
    const broken = checks
      .map((k, i) => (k.exitCode === 0 ? '' : `${valid[i]!.id}: ${describeExit(k)}: ${said(k)}`))
      .filter(Boolean);
    if (broken.length) throw fail(`GC broke attachment(s) it was told are valid; CHECK ${broken.join('; ')}`);
    return `exit 0, no output; ${valid.length} valid attachment(s) still pass CHECK`;
  });
}

/** STATUS right after the plugin served ADDs: exit 0 and no output. */
export async function statusCheck(run: RunContext): Promise<void> {
  await run.step('status', '1.1.0', async () => {
    const call = await run.call({ command: 'STATUS', stdin: run.configFor('1.1.0', null) });
    if (call.exitCode !== 0 && isObj(call.json ?? null)) {
      const code = (call.json as { code?: unknown }).code;
      if (code === 50 || code === 51) throw fail(`reports not available (${said(call)}) although ADD works`);
    }
    return expectQuietSuccess(call, 'STATUS');
  });
}
