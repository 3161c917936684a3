import { RE2JS } from '@bufbuild/re2';

/**
 * Regular expressions with Go's semantics (RE2, as kube-apiserver runs `pattern` and CEL's
 * `matches`), compiled once per pattern: definitions and rules use a few constant patterns, and a
 * compile costs far more than a match. At most 512 are kept (the oldest dropped first).
 */
const CACHE_SIZE = 512;
const cache = new Map<string, RE2JS>();

/** The compiled pattern; throws RE2JS's error when it does not compile. */
export function compiledRe2(pattern: string): RE2JS {
  let compiled = cache.get(pattern);
  if (compiled === undefined) {
    compiled = RE2JS.compile(pattern);
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    cache.set(pattern, compiled);
  }
  return compiled;
}
