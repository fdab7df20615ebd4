// Reading the files of a model folder that may come from anywhere. Every file is opened only when its real
// path (symlinks resolved) lies inside the folder's, only when it is a regular file (a FIFO would block a
// read forever, a device would never end), and only up to a size limit. Error messages name paths, sizes and
// positions, never bytes of the file: a file can be a symlink to something private, and a message is
// printed to whoever runs the CLI.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** An errno code and a short text, without the message Node would add (it repeats the path). */
function errnoText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const known: Record<string, string> = {
    ENOENT: 'not found',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    ELOOP: 'too many levels of symlinks',
    ENOTDIR: 'a path component is not a folder',
    ENAMETOOLONG: 'name too long',
  };
  return code ? `${known[code] ?? 'not readable'} (${code})` : 'not readable';
}

function fileKind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * The folders a file of `realFolder` may really live in: the folder itself, and for a Hugging Face hub
 * cache snapshot (`models--org--name/snapshots/<rev>`, whose files are symlinks to `../../blobs/<hash>`)
 * that repository's `blobs` folder.
 */
function allowedRoots(realFolder: string): string[] {
  const roots = [realFolder];
  const parent = path.dirname(realFolder);
  if (path.basename(parent) === 'snapshots') roots.push(path.join(path.dirname(parent), 'blobs'));
  return roots;
}

const isInside = (root: string, p: string): boolean => {
  const rel = path.relative(root, p);
  return !path.isAbsolute(rel) && rel.split(path.sep)[0] !== '..'; // '' (the root itself) is inside
};

/**
 * True when `name` (relative to a folder) stays inside it by its text: no absolute path and no `..`
 * segment that climbs out. `..lm.safetensors` is a plain name; only a segment equal to `..` climbs.
 */
export function namedInside(folder: string, name: string): boolean {
  if (path.isAbsolute(name)) return false;
  return isInside(path.resolve(folder), path.resolve(folder, name));
}

/**
 * Opens `file`, which must lie inside `folder` (by real path), for reading; returns its descriptor and
 * size. `what` names the file's role in errors ("weights", "shard", "model config").
 */
export function openInFolder(folder: string, file: string, what: string): { fd: number; size: number } {
  let realFolder: string;
  try {
    realFolder = fs.realpathSync(folder);
  } catch (e) {
    throw new Error(`${file}: cannot read the ${what}: its folder ${folder} is ${errnoText(e)}`);
  }
  let realFile: string;
  try {
    realFile = fs.realpathSync(file);
  } catch (e) {
    throw new Error(`${file}: cannot read the ${what}: ${errnoText(e)}`);
  }
  if (!allowedRoots(realFolder).some((root) => isInside(root, realFile)))
    throw new Error(`${file}: the ${what} is outside the model folder ${folder} (it resolves to ${realFile})`);
  return openRegular(file, what);
}

/** Opens `file` for reading when it is a regular file; returns its descriptor and size. */
export function openRegular(file: string, what: string): { fd: number; size: number } {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; regular files ignore it.
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw new Error(`${file}: cannot read the ${what}: ${errnoText(e)}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error(`${file}: the ${what} is ${fileKind(st)}, not a regular file`);
    return { fd, size: st.size };
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
}

/** Reads a whole text file of the folder, refusing one over `maxBytes` before reading it. */
export function readTextInFolder(folder: string, file: string, what: string, maxBytes: number): string {
  const { fd, size } = openInFolder(folder, file, what);
  try {
    if (size > maxBytes) throw new Error(`${file}: the ${what} is ${size} bytes, over the ${maxBytes}-byte limit`);
    const buf = Buffer.alloc(size);
    let done = 0;
    while (done < size) {
      const n = fs.readSync(fd, buf, done, size - done, done);
      if (n === 0) break; // shrank while reading: parse what is there
      done += n;
    }
    return buf.toString('utf8', 0, done);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * JSON.parse, with an error (`prefix` + "not valid JSON") that says where the text stops being JSON but not what it says there
 * (V8's own messages quote the text around the error).
 */
export function parseJsonText(text: string, prefix: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const pos = /position (\d+)/.exec((e as Error).message);
    const at = pos ? ` (at character ${pos[1]} of ${text.length})` : /end of JSON/i.test((e as Error).message) ? ' (it ends early)' : '';
    throw new Error(`${prefix}not valid JSON${at}`);
  }
}

/** Plain names (tensor names, dtypes, model types) are quoted in messages; any other text is only described. */
const PLAIN = /^[A-Za-z0-9_.\-/]{1,200}$/;
export const isPlainName = (s: string): boolean => PLAIN.test(s);

/** A JSON value as an error message may show it: numbers and plain names as they are, other text by its size. */
export function showValue(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null || typeof v === 'number' || typeof v === 'boolean') return JSON.stringify(v) ?? String(v);
  if (typeof v === 'string') return PLAIN.test(v) ? JSON.stringify(v) : `a ${v.length}-character string`;
  if (Array.isArray(v))
    return v.length <= 8 && v.every((x) => x === null || typeof x !== 'object')
      ? `[${v.map(showValue).join(',')}]`
      : `an array of ${v.length} items`;
  return 'an object';
}

/** A name from a file (tensor name, key) as a message may show it. */
export function showName(name: string): string {
  return PLAIN.test(name) ? `"${name}"` : `(a ${name.length}-character name)`;
}

/**
 * One pass over JSON text, before JSON.parse builds anything: counts the top-level object's keys, failing
 * as soon as there are more than `maxKeys` (a header of a million empty tensors must not be parsed first)
 * or it nests deeper than `maxDepth`, and finds a key repeated within one object, which JSON.parse would
 * silently resolve to the last value.
 * Malformed text is passed over (JSON.parse then says where); the result is the first duplicate found, as
 * the top-level key it is under and the repeated key (equal for a top-level duplicate), or null.
 */
export function scanJsonKeys(
  text: string,
  limits: { maxKeys: number; maxDepth: number },
  fail: (why: string) => Error,
): { top: string; key: string } | null {
  type Frame = { keys: Set<string>; expectKey: boolean } | null; // null: an array
  const stack: Frame[] = [];
  let topKeys = 0;
  let currentTop = '';
  let dup: { top: string; key: string } | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      const frame = stack.at(-1);
      if (frame && frame.expectKey) {
        frame.expectKey = false;
        let key: string;
        try {
          key = JSON.parse(text.slice(i, j + 1)) as string; // the key as JSON.parse reads it (escapes decoded)
        } catch {
          key = text.slice(i + 1, j);
        }
        if (stack.length === 1) {
          if (++topKeys > limits.maxKeys) throw fail(`has more than ${limits.maxKeys} entries`);
          currentTop = key;
        }
        if (frame.keys.has(key)) dup ??= { top: stack.length === 1 ? key : currentTop, key };
        else frame.keys.add(key);
      }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= limits.maxDepth) throw fail(`is nested deeper than ${limits.maxDepth} levels`);
      stack.push(c === 0x7b ? { keys: new Set(), expectKey: true } : null);
    }
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) stack.pop();
    else if (c === 0x2c /* , */) {
      const frame = stack.at(-1);
      if (frame) frame.expectKey = true;
    }
  }
  return dup;
}
