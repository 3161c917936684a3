/**
 * ReviewCache: what TokenReview and SubjectAccessReview answers are reused, for how long, and how
 * many are kept.
 */
import { ReviewCache, type Reviewed } from '../server/auth/review-cache';

function counter<T>(answer: (n: number) => Reviewed<T>) {
  let calls = 0;
  return {
    get calls() {
      return calls;
    },
    review: () => Promise.resolve(answer(++calls)),
  };
}

describe('ReviewCache', () => {
  let clock: number;
  beforeEach(() => {
    clock = 1_000_000;
  });

  test('keeps an answer for its TTL, then asks again', async () => {
    // GIVEN
    const cache = new ReviewCache<string>({ now: () => clock });
    const reviewer = counter((n) => ({ value: `answer-${n}`, ttlMs: 10_000 }));

    // WHEN asked three times within the TTL, then after it
    const first = await cache.get('k', reviewer.review);
    clock += 9_999;
    const second = cache.get('k', reviewer.review);
    clock += 1;
    const third = await cache.get('k', reviewer.review);

    // THEN the kept answer is returned synchronously until it expires
    expect([first, second, third]).toEqual(['answer-1', 'answer-1', 'answer-2']);
    expect(reviewer.calls).toBe(2);
  });

  test('does not keep an answer whose TTL is 0 (a review that could not be made)', async () => {
    const cache = new ReviewCache<string>({ now: () => clock });
    const reviewer = counter((n) => ({ value: `failure-${n}`, ttlMs: 0 }));
    expect(await cache.get('k', reviewer.review)).toBe('failure-1');
    expect(await cache.get('k', reviewer.review)).toBe('failure-2');
    expect(cache.size).toBe(0);
  });

  test('concurrent askers of one key share one review; other keys get their own', async () => {
    const cache = new ReviewCache<string>({ now: () => clock });
    const reviewer = counter((n) => ({ value: `answer-${n}`, ttlMs: 10_000 }));
    const answers = await Promise.all([cache.get('a', reviewer.review), cache.get('a', reviewer.review), cache.get('b', reviewer.review)]);
    expect(answers).toEqual(['answer-1', 'answer-1', 'answer-2']);
    expect(reviewer.calls).toBe(2);
  });

  test('fails every sharer of a review that throws, keeps nothing, and asks again next time', async () => {
    const cache = new ReviewCache<string>({ now: () => clock });
    const failing = () => Promise.reject(new Error('boom'));
    await expect(Promise.all([cache.get('k', failing), cache.get('k', failing)])).rejects.toThrow('boom');
    expect(await cache.get('k', () => Promise.resolve({ value: 'recovered', ttlMs: 10_000 }))).toBe('recovered');
  });

  test('keeps at most maxEntries: expired answers go first, then the oldest', async () => {
    // GIVEN a full cache of three, "old" about to expire
    const cache = new ReviewCache<string>({ maxEntries: 3, now: () => clock });
    await cache.get('old', () => Promise.resolve({ value: 'old', ttlMs: 1_000 }));
    await cache.get('b', () => Promise.resolve({ value: 'b', ttlMs: 60_000 }));
    await cache.get('c', () => Promise.resolve({ value: 'c', ttlMs: 60_000 }));
    clock += 1_000;

    // WHEN two more are added
    await cache.get('d', () => Promise.resolve({ value: 'd', ttlMs: 60_000 }));
    await cache.get('e', () => Promise.resolve({ value: 'e', ttlMs: 60_000 }));

    // THEN the expired one went first, then the oldest live one ("b"); the rest are kept
    expect(cache.size).toBe(3);
    const never = () => Promise.reject(new Error('should have been kept'));
    expect([cache.get('c', never), cache.get('d', never), cache.get('e', never)]).toEqual(['c', 'd', 'e']);
    expect(await cache.get('b', () => Promise.resolve({ value: 'b again', ttlMs: 60_000 }))).toBe('b again');
  });
});
