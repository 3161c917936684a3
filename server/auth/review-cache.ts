/**
 * The cache in front of kube-apiserver's reviews (TokenReview, SubjectAccessReview), as upstream's
 * cached webhook authenticator and authorizer keep them: an answer is kept for the TTL its review
 * returns (0: not kept, e.g. a review that could not be made), concurrent askers of one key share
 * one review, and at most `maxEntries` answers are kept (expired ones go first, then the oldest).
 */
export interface ReviewCacheOptions {
  /** @default 10000 */
  readonly maxEntries?: number;
  /** @default Date.now */
  readonly now?: () => number;
}

/** What a review answers, and how long (ms) that answer may be reused. */
export interface Reviewed<T> {
  readonly value: T;
  readonly ttlMs: number;
}

export class ReviewCache<T> {
  private readonly entries = new Map<string, { value: T; expires: number }>();
  private readonly pending = new Map<string, Promise<T>>();
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(options: ReviewCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 10_000;
    this.now = options.now ?? Date.now;
  }

  /** How many answers are kept. */
  get size(): number {
    return this.entries.size;
  }

  /** The answer kept for `key` and when it expires (`now()` time), if it has not expired. */
  lookup(key: string): { readonly value: T; readonly expires: number } | undefined {
    const cached = this.entries.get(key);
    return cached && cached.expires > this.now() ? cached : undefined;
  }

  /** The kept answer for `key` (synchronously), or the one `review` gives, shared with concurrent callers. */
  get(key: string, review: () => Promise<Reviewed<T>>): T | Promise<T> {
    const cached = this.entries.get(key);
    if (cached && cached.expires > this.now()) return cached.value;
    if (cached) this.entries.delete(key);
    let inflight = this.pending.get(key);
    if (!inflight) {
      inflight = review()
        .then(({ value, ttlMs }) => {
          if (ttlMs > 0) this.remember(key, value, ttlMs);
          return value;
        })
        .finally(() => this.pending.delete(key));
      this.pending.set(key, inflight);
    }
    return inflight;
  }

  private remember(key: string, value: T, ttlMs: number): void {
    if (this.entries.size >= this.maxEntries) {
      const t = this.now();
      for (const [k, v] of this.entries) if (v.expires <= t) this.entries.delete(k);
      // Still full: drop the oldest entries (a Map keeps insertion order).
      for (const k of this.entries.keys()) {
        if (this.entries.size < this.maxEntries) break;
        this.entries.delete(k);
      }
    }
    this.entries.set(key, { value, expires: this.now() + ttlMs });
  }
}
