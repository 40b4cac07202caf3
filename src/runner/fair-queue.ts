// Runs in: the milter process (pure: no I/O, no timers).
//
// Which filter run starts next (docs/reference.md §3 filter.maxPerUser): at
// most `slots` runs in flight in all, at most `perKey` of one user, and the
// rest wait. The next to start is the oldest waiting run whose user is below
// their limit: first come, first served across users, skipping users who are
// at theirs. So four slow messages to one user hold two of that user's runs,
// never everybody's slots, and the user's own runs start in the order they
// came (as Postfix's local(8) caps deliveries per recipient).
//
// Each user with waiting runs has a lane (a FIFO of their runs); the lanes
// that may start a run sit in a min-heap ordered by the arrival of their
// oldest run, so picking the next run costs O(log users) however many wait.

export interface FairQueueLimits {
  /** Runs in flight at once, in all (the runner's slots: pool.threads x 4). */
  slots: number;
  /** Runs of one key (user) in flight at once (filter.maxPerUser). */
  perKey: number;
}

interface Lane<K, T> {
  key: K;
  /** Waiting items, oldest first, each with its arrival number. */
  items: Array<{ seq: number; item: T }>;
  /** Items of this key started and not yet finished. */
  running: number;
  /** In the heap of lanes that may start their oldest item. */
  ready: boolean;
}

export class FairQueue<K, T> {
  #slots: number;
  #perKey: number;
  readonly #lanes = new Map<K, Lane<K, T>>();
  /** Lanes with waiting items and room under perKey, as a binary min-heap on their oldest item's seq. */
  readonly #heap: Array<Lane<K, T>> = [];
  #seq = 0;
  #waiting = 0;
  #running = 0;

  constructor(limits: FairQueueLimits) {
    checkLimit('slots', limits.slots);
    checkLimit('perKey', limits.perKey);
    this.#slots = limits.slots;
    this.#perKey = limits.perKey;
  }

  /** Items waiting to start. */
  get waiting(): number {
    return this.#waiting;
  }

  /** Items started and not yet finished. */
  get running(): number {
    return this.#running;
  }

  /** Items of `key` started and not yet finished. */
  runningOf(key: K): number {
    return this.#lanes.get(key)?.running ?? 0;
  }

  get limits(): FairQueueLimits {
    return { slots: this.#slots, perKey: this.#perKey };
  }

  /** A new per-key limit (configuration reload). Runs above a lowered limit finish; no new one starts until below it. */
  setPerKey(perKey: number): void {
    checkLimit('perKey', perKey);
    this.#perKey = perKey;
    this.#heap.length = 0;
    for (const lane of this.#lanes.values()) {
      lane.ready = false;
      this.#offer(lane);
    }
  }

  /** Queues one item behind everything already waiting. */
  push(key: K, item: T): void {
    let lane = this.#lanes.get(key);
    if (lane === undefined) {
      lane = { key, items: [], running: 0, ready: false };
      this.#lanes.set(key, lane);
    }
    lane.items.push({ seq: this.#seq++, item });
    this.#waiting++;
    this.#offer(lane);
  }

  /** The next item allowed to start, now counted as running; undefined when none may start. */
  next(): { key: K; item: T } | undefined {
    if (this.#running >= this.#slots) return undefined;
    const lane = this.#pop();
    if (lane === undefined) return undefined;
    const head = lane.items.shift() as { seq: number; item: T };
    lane.running++;
    this.#running++;
    this.#waiting--;
    this.#offer(lane);
    return { key: lane.key, item: head.item };
  }

  /** An item of `key` that next() gave out has ended (however it ended). */
  finished(key: K): void {
    const lane = this.#lanes.get(key);
    if (lane === undefined || lane.running === 0) throw new Error(`FairQueue: finished(${String(key)}) without a running item`);
    lane.running--;
    this.#running--;
    if (lane.running === 0 && lane.items.length === 0) this.#lanes.delete(key);
    else this.#offer(lane);
  }

  /** Removes and returns every waiting item, oldest first (shutdown). Running ones stay counted until finished(). */
  drain(): T[] {
    const all = [...this.#lanes.values()].flatMap((l) => l.items);
    all.sort((a, b) => a.seq - b.seq);
    for (const lane of this.#lanes.values()) {
      lane.items.length = 0;
      lane.ready = false;
      if (lane.running === 0) this.#lanes.delete(lane.key);
    }
    this.#heap.length = 0;
    this.#waiting = 0;
    return all.map((e) => e.item);
  }

  /** Puts `lane` in the heap if it has a waiting item, room under perKey, and is not there yet. */
  #offer(lane: Lane<K, T>): void {
    if (lane.ready || lane.items.length === 0 || lane.running >= this.#perKey) return;
    lane.ready = true;
    const h = this.#heap;
    h.push(lane);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (headSeq(h[parent]!) <= headSeq(h[i]!)) break;
      [h[parent], h[i]] = [h[i]!, h[parent]!];
      i = parent;
    }
  }

  #pop(): Lane<K, T> | undefined {
    const h = this.#heap;
    const top = h[0];
    if (top === undefined) return undefined;
    const last = h.pop() as Lane<K, T>;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let min = i;
        if (l < h.length && headSeq(h[l]!) < headSeq(h[min]!)) min = l;
        if (r < h.length && headSeq(h[r]!) < headSeq(h[min]!)) min = r;
        if (min === i) break;
        [h[min], h[i]] = [h[i]!, h[min]!];
        i = min;
      }
    }
    top.ready = false;
    return top;
  }
}

function headSeq<K, T>(lane: Lane<K, T>): number {
  return (lane.items[0] as { seq: number }).seq;
}

function checkLimit(name: string, n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`FairQueue: ${name} must be a positive integer`);
}
