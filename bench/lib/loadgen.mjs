/**
 * Parent side of the load generator (bench/lib/load.mjs): one long-lived child process, one
 * run at a time, each bounded by its duration plus a margin.
 */
import { fileURLToPath } from 'node:url';
import { startProcess, waitReady } from './procs.mjs';

const LOAD_SCRIPT = fileURLToPath(new URL('./load.mjs', import.meta.url));

export async function startLoadGenerator() {
  const proc = startProcess('load generator', process.execPath, [LOAD_SCRIPT], { ipc: true });
  const pending = new Map();
  let ready = false;
  let nextId = 1;
  proc.child.on('message', (message) => {
    if (message?.type === 'ready') ready = true;
    const waiter = pending.get(message?.id);
    if (waiter === undefined) return;
    pending.delete(message.id);
    if (message.type === 'result') waiter.resolve(message.result);
    else waiter.reject(new Error(`load generator: ${message.message}`));
  });
  proc.exited.then(() => {
    for (const waiter of pending.values()) {
      waiter.reject(new Error(`load generator exited (${proc.exitStatus}):\n${proc.log()}`));
    }
    pending.clear();
  });
  await waitReady(proc, async () => (ready ? true : undefined));
  return {
    pid: proc.pid,
    /** `{ url, method, bodySize, connections, duration (s), timeout (s) }` -> figures. */
    run(options) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        // autocannon stops at `duration`; a response still due after `timeout` counts as one.
        const limitMs = (options.duration + options.timeout + 15) * 1000;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error(`load run did not finish within ${limitMs} ms`));
        }, limitMs);
        pending.set(id, {
          resolve: (value) => {
            clearTimeout(timer);
            resolve(value);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          },
        });
        proc.child.send({ type: 'run', id, options });
      });
    },
    stop: () => proc.stop(),
  };
}
