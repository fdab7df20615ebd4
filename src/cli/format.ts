// Plain-text tables for the terminal.
export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map((c) => String(c)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

export function bytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(1)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 10).toFixed(1)} KiB`;
}

export const fixed = (x: number | undefined, digits = 1): string => (x === undefined ? '' : x.toFixed(digits));

export const FORMATS = ['table', 'md', 'csv', 'json'] as const;
export type Format = (typeof FORMATS)[number];

export function checkFormat(f: string): Format {
  if (!(FORMATS as readonly string[]).includes(f)) throw new Error(`--format must be one of ${FORMATS.join(', ')}, got "${f}"`);
  return f as Format;
}

/** A Markdown table; `|` in a cell is escaped so it stays one cell. */
export function markdown(headers: string[], rows: (string | number)[][]): string {
  const cell = (c: string | number) => String(c).replace(/\|/g, '\\|');
  const line = (r: (string | number)[]) => `| ${r.map(cell).join(' | ')} |`;
  return [line(headers), `|${headers.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`, ...rows.map(line)].join('\n');
}

/** CSV (RFC 4180): a cell with a comma, quote or line break is quoted, its quotes doubled. */
export function csv(headers: string[], rows: (string | number)[][]): string {
  const cell = (c: string | number) => (/[",\r\n]/.test(String(c)) ? `"${String(c).replace(/"/g, '""')}"` : String(c));
  return [headers, ...rows].map((r) => r.map(cell).join(',')).join('\n');
}

/** The rows in the text format asked for (json is written by the caller). */
export function render(format: Exclude<Format, 'json'>, headers: string[], rows: (string | number)[][]): string {
  return format === 'md' ? markdown(headers, rows) : format === 'csv' ? csv(headers, rows) : table(headers, rows);
}
