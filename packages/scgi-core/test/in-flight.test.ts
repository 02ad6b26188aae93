// The proxy's list of exchanges in flight (src/engine/in-flight.ts) behaves as the Set it
// replaces, and an item taken out keeps no link to any other (the reason it is not a Set).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type InFlightLink, InFlightList } from '../src/engine/in-flight.js';

class Item implements InFlightLink<Item> {
  inFlightPrev: Item | null = null;
  inFlightNext: Item | null = null;
  constructor(readonly n: number) {}
}

describe('InFlightList', () => {
  it('matches a Set under any sequence of adds and deletes, and clears the links it drops', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 9 })), { maxLength: 200 }),
        (ops) => {
          const items = Array.from({ length: 10 }, (_, i) => new Item(i));
          const list = new InFlightList<Item>();
          const model = new Set<Item>();
          for (const [add, n] of ops) {
            const item = items[n]!;
            if (add) {
              // The proxy adds an exchange once; a second add of a listed item is not a case.
              if (model.has(item)) continue;
              list.add(item);
              model.add(item);
            } else {
              list.delete(item);
              model.delete(item);
            }
            expect(list.size).toBe(model.size);
            expect(new Set(list.toArray())).toEqual(model);
            for (const i of items) {
              if (!model.has(i)) {
                expect(i.inFlightPrev).toBeNull();
                expect(i.inFlightNext).toBeNull();
              }
            }
          }
        },
      ),
    );
  });

  it('some() sees every listed item and none that was taken out', () => {
    const list = new InFlightList<Item>();
    const a = new Item(1);
    const b = new Item(2);
    const c = new Item(3);
    list.add(a);
    list.add(b);
    list.add(c);
    list.delete(b);
    expect(list.some((i) => i.n === 1)).toBe(true);
    expect(list.some((i) => i.n === 3)).toBe(true);
    expect(list.some((i) => i.n === 2)).toBe(false);
    // Deleting what is not listed changes nothing.
    list.delete(b);
    expect(list.size).toBe(2);
    expect(list.toArray().map((i) => i.n)).toEqual([3, 1]);
  });
});
