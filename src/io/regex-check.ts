// A static check of the regexes a tokenizer.json brings (Split pre-tokenizers, Replace normalizers and
// decoders), run before @huggingface/tokenizers compiles them. JavaScript regexes backtrack, so a pattern
// such as `(a+)+$` takes time exponential in the text's length: one prompt would stall the process.
//
// Refused, because they make backtracking exponential:
//   - a repeated group (`*`, `+`, `{m,n}` with n > 1 after `)`) that itself contains a quantifier
//     (`(a+)+`, `(a?)*`) or an alternation (`(a|aa)+`); an optional group (`(?:'s|'t)?`) is fine;
//   - backreferences (`\1`, `\k<name>`), whose matching is NP-hard in general.
// Bounded, because each extra unbounded quantifier over the same span multiplies the work by the text's
// length (`\s*\s*\s*x` is cubic): at most MAX_UNBOUNDED_PER_BRANCH unbounded quantifiers (`*`, `+`,
// `{m,}`) in one branch of an alternation, the most that real tokenizers use (Llama 3's
// ` ?[^\s\p{L}\p{N}]+[\r\n]*`). Polynomial cost within that bound remains (as in those tokenizers).
// The check is conservative: it may refuse a safe pattern; it reads Oniguruma syntax as the library does.

const MAX_UNBOUNDED_PER_BRANCH = 2;
/** Real pre-tokenizer patterns are a few hundred characters. */
export const MAX_REGEX_LENGTH = 4096;

/** Why `source` is refused, or null when it passes. */
export function unsafeRegex(source: string): string | null {
  if (source.length > MAX_REGEX_LENGTH) return `it is ${source.length} characters long, over ${MAX_REGEX_LENGTH}`;
  // unbounded: in the current branch; branchMax: the most in an earlier branch of this group.
  type Frame = { quant: boolean; alt: boolean; unbounded: number; branchMax: number };
  const stack: Frame[] = [{ quant: false, alt: false, unbounded: 0, branchMax: 0 }];
  let i = 0;
  // After an atom: reads a quantifier if one follows. repeats: it can match the atom more than once.
  type Quant = { repeats: boolean; unbounded: boolean };
  const quantifier = (): Quant | null => {
    const c = source[i];
    let q: Quant | null = null;
    if (c === '*' || c === '+') q = { repeats: true, unbounded: true };
    else if (c === '?') q = { repeats: false, unbounded: false };
    else if (c === '{') {
      const m = /^\{(\d*)(,?)(\d*)\}/.exec(source.slice(i, i + 24));
      if (m && (m[1] !== '' || m[3] !== '')) {
        i += m[0].length - 1;
        const max = m[2] === '' ? Number(m[1]) : m[3] === '' ? Infinity : Number(m[3]);
        q = { repeats: max > 1, unbounded: max === Infinity };
      }
    }
    if (!q) return null;
    i++;
    if (source[i] === '?' || source[i] === '+') i++; // lazy or possessive
    return q;
  };
  const note = (f: Frame, q: Quant | null) => {
    if (!q) return;
    f.quant = true;
    if (q.unbounded) f.unbounded++;
  };

  while (i < source.length) {
    const c = source[i]!;
    const top = stack.at(-1)!;
    if (c === '\\') {
      const e = source[i + 1] ?? '';
      if (/[1-9]/.test(e) || e === 'k' || e === 'g') return 'it has a backreference';
      i += 2;
      if ('pPxuN'.includes(e) && source[i] === '{') {
        const close = source.indexOf('}', i);
        i = close < 0 ? source.length : close + 1;
      }
      note(top, quantifier());
      if (top.unbounded > MAX_UNBOUNDED_PER_BRANCH) break;
    } else if (c === '[') {
      // A character class, possibly nested (Oniguruma's [a-z&&[^aeiou]]): one atom.
      let depth = 0;
      do {
        if (source[i] === '\\') i++;
        else if (source[i] === '[') depth++;
        else if (source[i] === ']' && !(source[i - 1] === '[' || (source[i - 1] === '^' && source[i - 2] === '['))) depth--;
        i++;
      } while (depth > 0 && i < source.length);
      note(top, quantifier());
    } else if (c === '(') {
      i++;
      if (source[i] === '?') {
        i++;
        if (source[i] === '<' && source[i + 1] !== '=' && source[i + 1] !== '!') {
          const close = source.indexOf('>', i);
          i = close < 0 ? source.length : close + 1; // a named group
        } else if (source[i] === '<') i += 2;
        else if ('=!:>'.includes(source[i] ?? '')) i++;
        else while (i < source.length && /[a-zA-Z-:]/.test(source[i]!)) if (source[i++] === ':') break; // (?i:...)
      }
      stack.push({ quant: false, alt: false, unbounded: 0, branchMax: 0 });
    } else if (c === ')') {
      i++;
      const group = stack.length > 1 ? stack.pop()! : { quant: false, alt: false, unbounded: 0, branchMax: 0 };
      const parent = stack.at(-1)!;
      const q = quantifier();
      if (q?.repeats && group.quant) return 'a repeated group contains a quantifier (nested quantifiers backtrack exponentially)';
      if (q?.repeats && group.alt) return 'a repeated group contains an alternation (it can backtrack exponentially)';
      parent.quant ||= group.quant;
      // A group's unbounded quantifiers count in the branch it sits in.
      parent.unbounded += Math.max(group.unbounded, group.branchMax);
      note(parent, q);
      if (parent.unbounded > MAX_UNBOUNDED_PER_BRANCH) break;
    } else if (c === '|') {
      i++;
      top.alt = true;
      top.branchMax = Math.max(top.branchMax, top.unbounded);
      top.unbounded = 0; // a new branch
    } else {
      i++;
      note(top, quantifier());
      if (top.unbounded > MAX_UNBOUNDED_PER_BRANCH) break;
    }
  }
  if (stack.some((f) => f.unbounded > MAX_UNBOUNDED_PER_BRANCH))
    return `a branch has over ${MAX_UNBOUNDED_PER_BRANCH} unbounded quantifiers (backtracking grows as a high power of the text's length)`;
  return null;
}
