// The addon's exports are exactly the typed surface of src/native.ts: NATIVE_KEYS is checked against
// NativeBinding by the compiler (both ways), and here against the loaded binary, so neither can drift.
import { describe, expect, it } from 'vitest';
import { NATIVE_KEYS, NATIVE_TESTING_KEYS, native } from '../../src/native.js';

const sorted = (xs: readonly string[]) => [...xs].sort();

describe('native surface', () => {
  it('exports exactly the names of NativeBinding', () => {
    expect(sorted(Object.keys(native))).toEqual(sorted(NATIVE_KEYS));
    expect(new Set(NATIVE_KEYS).size).toBe(NATIVE_KEYS.length);
  });

  it('keeps test hooks under `testing`, exactly the names of NativeTestingHooks', () => {
    expect(sorted(Object.keys(native.testing))).toEqual(sorted(NATIVE_TESTING_KEYS));
    for (const k of NATIVE_TESTING_KEYS) expect(k in native, `${k} is not a public export`).toBe(false);
  });

  it('exports functions, and the tensor class', () => {
    for (const k of NATIVE_KEYS) {
      if (k === 'testing') expect(typeof native.testing).toBe('object');
      else expect(typeof native[k], k).toBe('function');
    }
    for (const k of NATIVE_TESTING_KEYS) expect(typeof native.testing[k], k).toBe('function');
    expect(native.empty('cpu:0', 'f32', [1])).toBeInstanceOf(native.NativeTensor);
  });
});
