/**
 * Cleanup when the process ends, shared by what scgi-core leaves behind (spawned workers, spooled
 * request bodies). 'exit' also runs after an uncaught exception. A signal whose default action
 * ends the process runs no 'exit': when nobody else listens, the cleanups run, our handler goes
 * and the signal is raised again, so the process still dies by it (Node's default behaviour).
 * When the app listens too, the signal is its to handle (a graceful close, a log reopen on
 * SIGHUP): nothing is pulled from under live requests, and 'exit' still cleans up what is left.
 *
 * One handler per signal for all of scgi-core: two of ours, each waiting to be alone, would
 * leave the process ignoring the signal. Prepended, so the count is taken before a `once`
 * listener of the app removes itself. Installed only while a cleanup is registered, so an idle
 * process carries no listener of ours.
 */

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const cleanups = new Set<() => void>();
const handlers = new Map<NodeJS.Signals, () => void>();

function runCleanups(): void {
  for (const cleanup of [...cleanups]) {
    try {
      cleanup();
    } catch {
      // one failing cleanup must not stop the others
    }
  }
}

function install(): void {
  process.on('exit', runCleanups);
  for (const sig of SIGNALS) {
    const handler = () => {
      if (process.listenerCount(sig) > 1) return;
      runCleanups();
      uninstall();
      process.kill(process.pid, sig);
    };
    handlers.set(sig, handler);
    process.prependListener(sig, handler);
  }
}

function uninstall(): void {
  process.removeListener('exit', runCleanups);
  for (const [sig, handler] of handlers) process.removeListener(sig, handler);
  handlers.clear();
}

/** Runs `cleanup` (synchronous) when the process ends, until `removeExitCleanup`. */
export function addExitCleanup(cleanup: () => void): void {
  if (cleanups.has(cleanup)) return;
  if (cleanups.size === 0) install();
  cleanups.add(cleanup);
}

export function removeExitCleanup(cleanup: () => void): void {
  if (cleanups.delete(cleanup) && cleanups.size === 0) uninstall();
}
