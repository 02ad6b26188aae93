/**
 * One timer for a list whose items expire in the order they joined it (one duration for all, so
 * the oldest is always the first due): the pool's queue (`queueTimeout`) and each backend's idle
 * kept connections (`keepAlive.idleTimeout`). A timer per item was a Timeout and a closure made and
 * cleared per request; this one is set for the first deadline, lets the owner expire what is due,
 * and is set again for the next deadline the owner reports.
 */
export class DeadlineTimer {
  #timer: NodeJS.Timeout | null = null;
  readonly #expire: (now: number) => number;
  readonly #unref: boolean;

  /**
   * `expire(now)` ends the items due at `now` (`performance.now()` ms) and returns the deadline of
   * the first one left, or Infinity. `unref`: the timer does not keep the process alive.
   */
  constructor(expire: (now: number) => number, unref: boolean) {
    this.#expire = expire;
    this.#unref = unref;
  }

  /** An item joined the list: the timer is set for its deadline unless already set (for an earlier one). */
  added(deadline: number): void {
    if (this.#timer === null) this.#setIn(deadline - performance.now());
  }

  /** Nothing left to expire (the list is empty, or closed). */
  clear(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  #setIn(ms: number): void {
    this.#timer = setTimeout(DeadlineTimer.#fire, Math.max(1, Math.ceil(ms)), this);
    if (this.#unref) this.#timer.unref();
  }

  static #fire(self: DeadlineTimer): void {
    self.#timer = null;
    const now = performance.now();
    const next = self.#expire(now);
    // Unless an item that joined meanwhile set it already.
    if (next !== Number.POSITIVE_INFINITY && self.#timer === null) self.#setIn(next - now);
  }
}
