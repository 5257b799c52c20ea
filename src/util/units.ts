/** Byte units and their parsing/formatting. Binary (IEC) units; "G"/"GB" are read as GiB too. */
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;
export const PiB = 1024 * TiB;

const unitBytes: Record<string, number> = {
  '': 1, b: 1,
  k: KiB, kb: KiB, kib: KiB,
  m: MiB, mb: MiB, mib: MiB,
  g: GiB, gb: GiB, gib: GiB,
  t: TiB, tb: TiB, tib: TiB,
  p: PiB, pb: PiB, pib: PiB,
};

/**
 * Parses "10GiB", "512M", "4096", "1.5 TiB" into bytes. Returns undefined for anything else,
 * including negatives, fractions of a byte and values past Number.MAX_SAFE_INTEGER.
 */
export function parseBytes(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!match) return undefined;
  const multiplier = unitBytes[(match[2] ?? '').toLowerCase()];
  if (multiplier === undefined) return undefined;
  const bytes = Number(match[1]) * multiplier;
  if (!Number.isSafeInteger(bytes)) return undefined;
  return bytes;
}

/** Formats bytes with the largest binary unit that keeps the value ≥ 1: "10 GiB", "1.5 MiB". */
export function formatBytes(bytes: number): string {
  const units: Array<[string, number]> = [['PiB', PiB], ['TiB', TiB], ['GiB', GiB], ['MiB', MiB], ['KiB', KiB]];
  for (const [name, size] of units) {
    if (bytes >= size) {
      const value = bytes / size;
      return `${Number.isInteger(value) ? value : value.toFixed(value < 10 ? 2 : 1)} ${name}`;
    }
  }
  return `${bytes} B`;
}

export function isPowerOfTwo(value: number): boolean {
  if (!Number.isSafeInteger(value) || value <= 0) return false;
  let rest = value;
  while (rest % 2 === 0) rest /= 2;
  return rest === 1;
}
