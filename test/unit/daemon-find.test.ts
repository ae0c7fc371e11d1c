// cniKitBinaryType recognises the two kinds of cni-kit binary a CNI_PATH may hold, so that a
// built-in type (host-local, static...) runs in-process behind either: a Node bundle by the marker
// on its second line, a native shim by the trailer in its last 4096 bytes (the shared daemon
// protocol). Anything else, including a shim-like trailer outside those bytes or on a non-ELF
// file, is not a cni-kit binary.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { cniKitBinaryType } from '../../src/delegate/find.js';

const dir = mkdtempSync(join(tmpdir(), 'daemon-find-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
const file = (bytes: Buffer | string): string => {
  const p = join(dir, `f${n++}`);
  writeFileSync(p, bytes, { mode: 0o755 });
  return p;
};
const ELF = Buffer.from('\x7fELF\x02\x01\x01\x00', 'latin1');
const trailer = (type: string, extra = '') =>
  Buffer.from(
    `\n--cni-kit-shim--\ntype=${type}\nfallback=cni-kit/${type}\nversion={"cniVersion":"1.1.0","supportedVersions":["0.3.1","1.1.0"]}\n${extra}--end--\n`,
  );
const filler = (size: number, seed = 7) => {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
};

describe('cniKitBinaryType on shims', () => {
  it('returns the trailer’s type for an ELF file with the shim trailer (with or without a socket line)', async () => {
    expect(await cniKitBinaryType(file(Buffer.concat([ELF, filler(20_000), trailer('host-local')])))).toBe(
      'host-local',
    );
    expect(
      await cniKitBinaryType(
        file(Buffer.concat([ELF, filler(100), trailer('static', 'socket=/run/cni-kit/daemon.sock\n')])),
      ),
    ).toBe('static');
  });

  it('a real executable with a trailer appended is a shim; the same executable without it is not', async () => {
    const plain = join(dir, 'true-plain');
    copyFileSync('/bin/true', plain);
    expect(await cniKitBinaryType(plain)).toBeUndefined();
    const shim = file(Buffer.concat([readFileSync('/bin/true'), trailer('whereabouts')]));
    expect(await cniKitBinaryType(shim)).toBe('whereabouts');
  });

  it('a rewritten trailer (cut at the last marker, new one appended) reports the newest type', async () => {
    const p = file(Buffer.concat([ELF, filler(5000), trailer('old'), filler(10), trailer('new')]));
    expect(await cniKitBinaryType(p)).toBe('new');
  });

  it('ignores a trailer further than 4 KiB from the end, on a non-ELF file, or on a plain ELF', async () => {
    expect(await cniKitBinaryType(file(Buffer.concat([ELF, trailer('far'), filler(4096)])))).toBeUndefined();
    expect(
      await cniKitBinaryType(file(Buffer.concat([Buffer.from('#!/bin/sh\n'), trailer('sh')]))),
    ).toBeUndefined();
    expect(
      await cniKitBinaryType(file(Buffer.concat([Buffer.from('MZ'), filler(50), trailer('pe')]))),
    ).toBeUndefined();
    expect(await cniKitBinaryType(file(Buffer.concat([ELF, filler(9000)])))).toBeUndefined();
    expect(await cniKitBinaryType(file(ELF))).toBeUndefined();
    expect(await cniKitBinaryType(file(''))).toBeUndefined();
    expect(await cniKitBinaryType(join(dir, 'missing'))).toBeUndefined();
    expect(await cniKitBinaryType(dir)).toBeUndefined();
  });

  it('finds the trailer wherever it sits in the last 4096 bytes and nowhere before (random sizes)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 12_000 }), fc.nat({ max: 5000 }), async (before, after) => {
        const t = trailer('ptp');
        const p = file(Buffer.concat([ELF, filler(before), t, filler(after, 3)]));
        const inside = t.length + after <= 4096;
        expect(await cniKitBinaryType(p)).toBe(inside ? 'ptp' : undefined);
        rmSync(p);
      }),
      { numRuns: 60 },
    );
  });

  it('a bundle still returns its marker type', async () => {
    expect(
      await cniKitBinaryType(file('#!/usr/bin/env node\n// cni-kit plugin host-local\n"use strict";\n')),
    ).toBe('host-local');
    // A bundle that happens to end with a trailer is still judged by its marker.
    expect(
      await cniKitBinaryType(
        file(
          Buffer.concat([Buffer.from('#!/usr/bin/env node\n// cni-kit plugin bridge\n'), trailer('other')]),
        ),
      ),
    ).toBe('bridge');
  });
});
