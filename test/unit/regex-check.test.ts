// The static regex check for tokenizer.json patterns: real tokenizers' pre-tokenizer regexes pass, patterns
// that backtrack exponentially (or as a high power of the text's length) are refused, and each refused one
// is shown to be slow for real on a short input (so the check refuses what matters).
import { describe, expect, it } from 'vitest';
import { unsafeRegex } from '../../src/io/regex-check.js';

// Split pre-tokenizer regexes of real tokenizer.json files, as the files spell them.
const REAL = {
  gpt2: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
  llama3: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  deepseek: "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  o200k:
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  digits: '\\p{N}',
  metaspace: ' ',
};

describe('unsafeRegex', () => {
  it('passes the pre-tokenizer regexes of real tokenizers', () => {
    for (const [name, p] of Object.entries(REAL)) expect(unsafeRegex(p), name).toBeNull();
  });

  it('refuses nested quantifiers, repeated alternations and backreferences', () => {
    const cases: [string, RegExp][] = [
      ['(a+)+$', /nested quantifiers/],
      ['(a*)*b', /nested quantifiers/],
      ['(a?){20}b', /nested quantifiers/],
      ['((a)+)*', /nested quantifiers/],
      ['(?:x\\d+)+y', /nested quantifiers/],
      ['(?:[ab]+c?)*d', /nested quantifiers/],
      ['(a|aa)+$', /alternation/],
      ['(?:a|a){25}b', /alternation/],
      ['(.*)\\1', /backreference/],
      ['(?<n>a)\\k<n>', /backreference/],
      ['\\s*\\s*\\s*x', /unbounded quantifiers/],
      ['a+(?:b*c+)d', /unbounded quantifiers/],
      ['x'.repeat(5000), /characters long/],
    ];
    for (const [p, why] of cases) expect(unsafeRegex(p), p).toMatch(why);
  });

  it('passes bounded and optional groups, classes with quantifier characters, escapes', () => {
    for (const p of ['(?:ab)+', '(?:ab|cd)?', 'a{2,}b{3}', '[+*?{}()|]+x', '\\(+\\)*', '\\p{L}{1,3}', '(?:a+)?b', 'x{,}']) expect(unsafeRegex(p), p).toBeNull();
  });

  it('what it refuses is slow for real: (a+)+$ doubles per character', () => {
    const re = /(a+)+$/;
    const t = (n: number) => {
      const s = 'a'.repeat(n) + '!';
      const t0 = performance.now();
      re.test(s);
      return performance.now() - t0;
    };
    t(18);
    expect(t(24) / Math.max(t(18), 0.05)).toBeGreaterThan(8); // 2^6 in theory
  });
});
