/**
 * The exchanges a proxy has in flight, as a list threaded through the exchanges themselves.
 *
 * Not a `Set`, on purpose. V8 keeps a `Set`'s entries in a table that is replaced when it grows,
 * shrinks or fills up with deleted entries, and the replaced table keeps its entries and a link to
 * the new table (for iterators). A set that lives as long as the proxy is in the old generation,
 * and every table it ever had stays reachable from it for the young-generation GC (which does not
 * know that nothing else refers to them) until the next full GC: with one add and one delete per
 * request, each request's exchange, and through its callbacks the request's whole object graph,
 * survived the young-generation GC and was promoted. Measured on the tiny case (bench/README.md,
 * `--trace-gc-nvp`): 1.1 to 1.3 MB promoted per scavenge and 1.6 to 2.3 ms per scavenge, against
 * none and 0.3 ms for the same exchanges kept in this list. Removing an exchange here clears its
 * links, so nothing old keeps a finished exchange reachable.
 */

/** What the list threads through (engine/exchange.ts). @internal */
export interface InFlightLink<T> {
  inFlightPrev: T | null;
  inFlightNext: T | null;
}

/** @internal */
export class InFlightList<T extends InFlightLink<T>> {
  #head: T | null = null;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  add(item: T): void {
    const head = this.#head;
    item.inFlightPrev = null;
    item.inFlightNext = head;
    if (head !== null) head.inFlightPrev = item;
    this.#head = item;
    this.#size++;
  }

  /** Takes `item` out; one that is not in the list is left alone. */
  delete(item: T): void {
    const prev = item.inFlightPrev;
    const next = item.inFlightNext;
    if (prev === null && this.#head !== item) return;
    if (prev !== null) prev.inFlightNext = next;
    else this.#head = next;
    if (next !== null) next.inFlightPrev = prev;
    item.inFlightPrev = null;
    item.inFlightNext = null;
    this.#size--;
  }

  /** Whether some item in the list passes `test`. */
  some(test: (item: T) => boolean): boolean {
    for (let i = this.#head; i !== null; i = i.inFlightNext) if (test(i)) return true;
    return false;
  }

  /** The items now in the list (a copy: the caller may remove them meanwhile). */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = this.#head; i !== null; i = i.inFlightNext) out.push(i);
    return out;
  }
}
