const UNITS = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3 } as const;

/** Parses a byte size such as `64MB`, `512KB` or `1048576` (binary units). Returns NaN when invalid. */
export function parseByteSize(text: string | number): number {
  if (typeof text === 'number') return Number.isInteger(text) && text > 0 ? text : Number.NaN;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)?\s*$/i.exec(text);
  if (!match) return Number.NaN;
  const unit = (match[2] ?? 'B').toUpperCase() as keyof typeof UNITS;
  const bytes = Math.floor(Number(match[1]) * UNITS[unit]);
  return bytes > 0 ? bytes : Number.NaN;
}
