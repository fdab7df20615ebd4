// Option values from the command line, checked where they are read: an error names the flag and what was
// given (empty text is not 0; "2.5" is not an integer).

/** `v` as a number (an integer with `int`). */
export function num(flag: string, v: string, int = false): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (int && !Number.isInteger(n))) throw new Error(`${flag} must be ${int ? 'an integer' : 'a number'}, got "${v}"`);
  return n;
}

/** As `num`, or undefined when the flag was not given. */
export function optionalNum(flag: string, v: string | undefined, int = false): number | undefined {
  return v === undefined ? undefined : num(flag, v, int);
}

/** A positive integer, or undefined when the flag was not given. */
export function positiveInt(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 1) throw new Error(`${flag} must be a positive integer, got "${v}"`);
  return n;
}
