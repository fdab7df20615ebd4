// Where a benchmark's charts go: a folder the user named. A chart this run could not draw is removed
// rather than left from an earlier run, so the folder never shows a failed strategy's old picture.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface ChartFolder {
  /** writes `name` (or removes it when `svg` is undefined) */
  write(name: string, svg: string | undefined): void;
  /** the paths written so far */
  readonly written: string[];
}

export function chartFolder(outDir: string): ChartFolder {
  mkdirSync(outDir, { recursive: true });
  const written: string[] = [];
  return {
    written,
    write(name, svg) {
      const f = path.join(outDir, name);
      if (svg === undefined) return void rmSync(f, { force: true });
      writeFileSync(f, svg);
      written.push(f);
    },
  };
}
