// Stop strings over streamed text: text is released only once it cannot be the start of a stop
// string, and generation ends at the first one found (which is not part of the output).

export class StopStringMatcher {
  private held = "";

  constructor(private readonly stops: string[]) {}

  /** Feeds new text; returns what may be released and the stop string that ended generation, if one did. */
  push(text: string): { text: string; stopped: boolean; matched?: string } {
    const buffer = this.held + text;
    let first = -1, matched = "";
    for (const stop of this.stops) {
      const at = buffer.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) [first, matched] = [at, stop];
    }
    if (first >= 0) {
      this.held = "";
      return { text: buffer.slice(0, first), stopped: true, matched };
    }
    const keep = this.partialSuffix(buffer);
    this.held = buffer.slice(buffer.length - keep);
    return { text: buffer.slice(0, buffer.length - keep), stopped: false };
  }

  /** At the end of generation, what was held back. */
  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }

  // Length of the longest suffix of `buffer` that is a proper prefix of some stop string.
  private partialSuffix(buffer: string): number {
    let best = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, buffer.length); n > best; n--) {
        if (buffer.endsWith(stop.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
