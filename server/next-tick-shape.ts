/**
 * Keeps `process.nextTick` on V8's fast path for the life of the process.
 *
 * Node builds each queued tick as an object literal with computed keys
 * (`{ [async_id_symbol]: …, [trigger_async_id_symbol]: …, callback, args }`, task_queues.js).
 * V8 caches how to add each of those properties by the object's map at that point, and that kind
 * of cache has no polymorphic state: the first time it meets another map it goes megamorphic, for
 * good, and every later tick adds its properties through the runtime. The maps are only as alive
 * as the tick objects using them, and a server between requests (or starting up) has none: once
 * three full GCs have run with no tick object alive (V8 keeps an unused map for two), the maps
 * die, the next tick builds new ones, and from then on every `nextTick` costs 4–6× what it did
 * (Node 20, 22 and 24 alike). An HTTP request makes several ticks (the request stream's end, the
 * response's finish), which came to 5 µs of the ~85 µs of CPU a GET takes (perf, bench/RESULTS.md).
 *
 * Holding one real tick object keeps its maps, so every later tick finds them again. It is
 * caught as async_hooks reports it to an init hook, enabled for that one call only.
 */
import { createHook } from 'node:async_hooks';

let pinned: object | undefined;

/** Catches and keeps one tick object; true once one is kept (false if Node stops reporting them). */
export function pinNextTickShape(): boolean {
  if (pinned !== undefined) return true;
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === 'TickObject' && pinned === undefined) pinned = resource;
    },
  });
  hook.enable();
  try {
    process.nextTick(() => undefined);
  } finally {
    hook.disable();
  }
  return pinned !== undefined;
}
