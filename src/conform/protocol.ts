// The checks that need no container state: VERSION (with and without a config) and the error
// protocol (unknown command, missing variables, bad JSON, unsupported version).
import { convertResult } from '../spec/index.js';
import { fail, type RunContext } from './context.js';
import { expectError, said } from './judge.js';
import { describeExit } from './proc.js';
import { checkVersionInfo } from './validate.js';

/** VERSION without a config: shape and exit 0. Returns supportedVersions when valid. */
export async function versionCheck(run: RunContext): Promise<string[] | undefined> {
  let supported: string[] | undefined;
  await run.step('version', null, async () => {
    const call = await run.call({ command: 'VERSION', stdin: '{"cniVersion":"1.1.0"}' });
    if (call.exitCode !== 0) throw fail(`${describeExit(call)}: ${said(call)}`);
    if (call.jsonError !== undefined) throw fail(call.jsonError);
    const problems = checkVersionInfo(call.json ?? null);
    if (problems.length) throw fail(problems.join('; '));
    const info = call.json as { cniVersion: string; supportedVersions: string[] };
    supported = info.supportedVersions;
    return `cniVersion ${info.cniVersion}; supports ${supported.join(', ')}`;
  });
  return supported;
}

/** VERSION with the config at `version` on stdin: same shape, and it lists that version. */
export async function versionConfigCheck(run: RunContext, version: string): Promise<void> {
  await run.step('version:config', version, async () => {
    const prev = run.s.prevFixture ? convertResult(run.s.prevFixture, version) : null;
    const call = await run.call({ command: 'VERSION', stdin: run.configFor(version, prev) });
    if (call.exitCode !== 0) throw fail(`${describeExit(call)}: ${said(call)}`);
    if (call.jsonError !== undefined) throw fail(call.jsonError);
    const problems = checkVersionInfo(call.json ?? null);
    if (problems.length) throw fail(problems.join('; '));
    const info = call.json as { supportedVersions: string[] };
    if (!info.supportedVersions.includes(version)) {
      throw fail(`supportedVersions ${JSON.stringify(info.supportedVersions)} lacks ${version}`);
    }
    return `lists ${version}`;
  });
}

/** The error protocol, at `version`: each case in a netns of its own, in parallel. */
export async function errorChecks(run: RunContext, version: string): Promise<void> {
  const prev = run.s.prevFixture ? convertResult(run.s.prevFixture, version) : null;
  const good = run.configFor(version, prev);
  const cases = [
    { check: 'error:unknown-command', code: 4, command: 'NOSUCHCOMMAND', omit: [], stdin: good },
    { check: 'error:missing-containerid', code: 4, command: 'ADD', omit: ['CNI_CONTAINERID'], stdin: good },
    { check: 'error:missing-ifname', code: 4, command: 'ADD', omit: ['CNI_IFNAME'], stdin: good },
    { check: 'error:missing-netns', code: 4, command: 'ADD', omit: ['CNI_NETNS'], stdin: good },
    {
      check: 'error:bad-json',
      code: 6,
      command: 'ADD',
      omit: [],
      stdin: `{"cniVersion":"${version}","name":`,
    },
    {
      check: 'error:unsupported-version',
      code: 1,
      command: 'ADD',
      omit: [],
      stdin: run.configFor('99.0.0', prev),
    },
  ];
  await Promise.all(
    cases.map((k) =>
      run.step(k.check, null, async () => {
        const c = await run.newContainer(false);
        try {
          const call = await run.call({ command: k.command, container: c, omit: k.omit, stdin: k.stdin });
          if (call.exitCode === 0 && k.command === 'ADD') {
            // It did an ADD it should have refused: undo it before the netns goes.
            await run.call({ command: 'DEL', container: c, stdin: good }).catch(() => undefined);
          }
          return expectError(call, k.code);
        } finally {
          await run.removeContainer(c);
        }
      }),
    ),
  );
}
