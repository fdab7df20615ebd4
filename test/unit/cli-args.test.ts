import { describe, expect, it } from 'vitest';
import { num, optionalNum, positiveInt } from '../../src/cli/args.js';

describe('command-line numbers', () => {
  it('reads numbers and names the flag of a bad one (empty text is not 0)', () => {
    expect(num('--top-p', '0.9')).toBe(0.9);
    expect(num('--seed', '42', true)).toBe(42);
    for (const bad of ['', ' ', 'x', 'NaN', 'Infinity']) expect(() => num('--temperature', bad)).toThrow(`--temperature must be a number, got "${bad}"`);
    expect(() => num('--seed', '2.5', true)).toThrow(/--seed must be an integer/);
    expect(optionalNum('--lr', undefined)).toBeUndefined();
    expect(optionalNum('--lr', '3e-4')).toBe(3e-4);
    expect(positiveInt('--batch', undefined)).toBeUndefined();
    expect(positiveInt('--batch', '64')).toBe(64);
    for (const bad of ['', '0', '-1', '1.5', 'x']) expect(() => positiveInt('--batch', bad)).toThrow(/--batch must be a positive integer/);
  });
});
