import { confListFromConf, parseNetConf, parseNetConfList, validAttachments } from 'cni-kit/spec';
import { describe, expect, it } from 'vitest';
import { cniErrorOf } from '../helpers/errors.js';

describe('parseNetConf', () => {
  it('keeps unknown keys and defaults a missing cniVersion to 0.1.0', () => {
    const c = parseNetConf('{"name":"n","type":"bridge","bridge":"cni0","isGateway":true}');
    expect(c.cniVersion).toBe('0.1.0');
    expect(c.bridge).toBe('cni0');
    expect(c.isGateway).toBe(true);
  });

  it('undecodable JSON is code 6 and quotes the input', () => {
    const e = cniErrorOf(() => parseNetConf('{"name": '));
    expect(e.code).toBe(6);
    expect(e.message).toMatch(/^error decoding network config:/);
    expect(e.details).toBe('{"name": ');
    expect(cniErrorOf(() => parseNetConf('[1]')).message).toMatch(/must be a JSON object, got a list/);
  });

  it('invalid configs are code 7 and name the path, the value and the fix', () => {
    const e = cniErrorOf(() => parseNetConf('{"name":"n","type":"bridge","ipam":{"type":7}}'));
    expect(e.code).toBe(7);
    expect(e.message).toBe(
      'invalid network config: ipam.type: 7 must be a string; name the IPAM plugin, e.g. "host-local"',
    );
    // A missing type is accepted, as the Go skel does (config-no-type.test.ts); a runtime refuses it.
    expect(parseNetConf('{"name":"n"}').type).toBeUndefined();
    const badName = cniErrorOf(() => parseNetConf('{"name":"-x","type":"t"}'));
    expect(badName.message).toMatch(/name: "-x" has an invalid format; use letters, digits/);
    const slash = cniErrorOf(() => parseNetConf('{"name":"n","type":"../evil"}'));
    expect(slash.message).toMatch(/type: "..\/evil" has an invalid format/);
  });

  it('reports every bad field: the first in msg, the rest in details', () => {
    const e = cniErrorOf(() =>
      parseNetConf('{"name":"n","type":"t","capabilities":{"ips":"yes"},"dns":{"search":"a"}}'),
    );
    expect(e.message).toMatch(/capabilities\.ips: "yes" must be a boolean/);
    expect(e.details).toMatch(/dns\.search: "a" must be a list/);
  });

  it('converts prevResult up to the current type, reading it with its own version', () => {
    const c = parseNetConf(
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'n',
        type: 't',
        prevResult: { cniVersion: '0.4.0', ips: [{ version: '4', address: '10.0.0.2/24' }], dns: {} },
      }),
    );
    expect(c.prevResult).toEqual({ cniVersion: '1.1.0', ips: [{ address: '10.0.0.2/24' }] });
    // without its own version, prevResult takes the config's
    const d = parseNetConf(
      '{"cniVersion":"0.2.0","name":"n","type":"t","prevResult":{"ip4":{"ip":"10.0.0.3/24"}}}',
    );
    expect(d.prevResult?.ips).toEqual([{ address: '10.0.0.3/24' }]);
    const bad = cniErrorOf(() =>
      parseNetConf('{"cniVersion":"1.0.0","name":"n","type":"t","prevResult":{"ips":[{}]}}'),
    );
    expect(bad.code).toBe(7);
    expect(bad.message).toMatch(/prevResult\.ips\[0\]\.address: missing/);
  });

  it('reads GC attachments from either key', () => {
    const a = [{ containerID: 'c1', ifname: 'eth0' }];
    const ours = [{ containerId: 'c1', ifname: 'eth0' }];
    expect(validAttachments({ 'cni.dev/valid-attachments': a })).toEqual(ours);
    expect(validAttachments({ 'cni.dev/attachments': a })).toEqual(ours);
    expect(validAttachments({})).toBeUndefined();
  });
});

describe('parseNetConfList', () => {
  const list = (o: Record<string, unknown>) =>
    JSON.stringify({ name: 'net', plugins: [{ type: 'bridge' }], ...o });

  it('picks the highest known version of cniVersions, dropping newer ones', () => {
    expect(
      parseNetConfList(list({ cniVersion: '0.4.0', cniVersions: ['1.0.0', '9.0.0', '0.3.1'] })).cniVersion,
    ).toBe('1.0.0');
    expect(parseNetConfList(list({ cniVersion: '1.0.0' })).cniVersion).toBe('1.0.0');
    expect(parseNetConfList(list({ cniVersion: '7.7.7' })).cniVersion).toBe('7.7.7');
  });

  it('accepts bools and "true"/"false" strings for the flags', () => {
    const l = parseNetConfList(
      list({ disableCheck: 'TRUE', disableGC: false, loadOnlyInlinedPlugins: 'false' }),
    );
    expect([l.disableCheck, l.disableGC, l.loadOnlyInlinedPlugins]).toEqual([true, false, false]);
    expect(cniErrorOf(() => parseNetConfList(list({ disableCheck: 'yes' }))).message).toMatch(
      /disableCheck: "yes" .*use true or false/,
    );
  });

  it('needs a name and a non-empty plugin list of typed plugins', () => {
    expect(cniErrorOf(() => parseNetConfList('{"plugins":[{"type":"x"}]}')).message).toMatch(/name: missing/);
    expect(cniErrorOf(() => parseNetConfList(list({ plugins: [] }))).message).toMatch(
      /plugins: \[\] must have at least 1 item/,
    );
    expect(cniErrorOf(() => parseNetConfList(list({ plugins: [{ ipam: {} }] }))).message).toMatch(
      /plugins\[0\]\.type: missing/,
    );
    expect(cniErrorOf(() => parseNetConfList('{"name":"n","loadOnlyInlinedPlugins":true}')).message).toMatch(
      /loadOnlyInlinedPlugins is true/,
    );
    expect(parseNetConfList('{"name":"n"}').plugins).toEqual([]);
  });

  it('wraps a single config as a list', () => {
    const conf = parseNetConf('{"cniVersion":"1.0.0","name":"n","type":"bridge","x":1}');
    const l = confListFromConf(conf);
    expect(l.name).toBe('n');
    expect(l.cniVersion).toBe('1.0.0');
    expect(l.plugins[0]?.x).toBe(1);
  });
});
