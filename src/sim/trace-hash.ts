/**
 * TraceHash: a running 64-bit fingerprint (two independent FNV-1a lanes) of everything a
 * simulation did — every event with its time and subject. Two runs of one seed must end with the
 * same fingerprint; that is how "a seed replays exactly" is tested. Not cryptographic.
 *
 * Optionally it keeps the last `linesMax` described events (a bounded ring) for printing the
 * events that led to a failure.
 */
export class TraceHash {
  private low = 0x811c9dc5;
  private high = 0x01000193 ^ 0x5bd1e995;
  private count = 0;
  private readonly lines: string[] = [];
  private next = 0;

  constructor(private readonly linesMax = 0) {}

  get eventCount(): number {
    return this.count;
  }

  mixNumber(value: number): void {
    // Split into 32-bit halves so every bit of a safe integer counts.
    const lowWord = value >>> 0;
    const highWord = Math.floor(value / 2 ** 32) >>> 0;
    this.mixWord(lowWord);
    this.mixWord(highWord);
  }

  mixString(value: string): void {
    for (let i = 0; i < value.length; i++) this.mixWord(value.charCodeAt(i));
  }

  /** Records one event: its time, a label and up to three numbers. */
  event(timeNs: number, label: string, a = 0, b = 0, c = 0): void {
    this.count++;
    this.mixNumber(timeNs);
    this.mixString(label);
    this.mixNumber(a);
    this.mixNumber(b);
    this.mixNumber(c);
    if (this.linesMax > 0) {
      const line = `${(timeNs / 1e6).toFixed(3)}ms ${label} ${a} ${b} ${c}`;
      if (this.lines.length < this.linesMax) this.lines.push(line);
      else this.lines[this.next] = line;
      this.next = (this.next + 1) % this.linesMax;
    }
  }

  /** The last events described, oldest first. */
  recentLines(): string[] {
    if (this.lines.length < this.linesMax) return this.lines.slice();
    return [...this.lines.slice(this.next), ...this.lines.slice(0, this.next)];
  }

  hex(): string {
    return (this.high >>> 0).toString(16).padStart(8, '0') + (this.low >>> 0).toString(16).padStart(8, '0');
  }

  private mixWord(word: number): void {
    this.low = Math.imul(this.low ^ (word & 0xffff), 0x01000193) >>> 0;
    this.low = Math.imul(this.low ^ (word >>> 16), 0x01000193) >>> 0;
    this.high = Math.imul(this.high ^ ((word >>> 8) & 0xffffff), 0x01000193) >>> 0;
    this.high = Math.imul(this.high ^ (word & 0xff) ^ (this.low >>> 24), 0x01000193) >>> 0;
  }
}

/** FNV-1a (32-bit) of bytes: entry and state digests for the checkers. */
export function digestBytes(bytes: Uint8Array, seed = 0x811c9dc5): number {
  let hash = seed >>> 0;
  for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ (bytes[i] as number), 0x01000193) >>> 0;
  return hash;
}
