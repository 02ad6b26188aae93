/** Private temporary directories for sockets, configs and logs, removed when the process exits. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const live = new Set<string>();
let hooked = false;

function removeAll(): void {
  for (const dir of live) rmSync(dir, { recursive: true, force: true });
  live.clear();
}

/**
 * A new directory under os.tmpdir() (mode 0700, from mkdtemp). Keep `prefix` short: a Unix
 * socket path must fit in 107 bytes (sun_path).
 */
export function makeTempDir(prefix = 'scgi-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  live.add(dir);
  if (!hooked) {
    hooked = true;
    process.once('exit', removeAll);
  }
  return dir;
}

/** Removes a directory made by makeTempDir now instead of at exit. Idempotent. */
export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  live.delete(dir);
}
