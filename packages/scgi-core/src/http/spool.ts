/**
 * Request body spooling. SCGI needs CONTENT_LENGTH in the head, before the first body byte,
 * so a body of unknown length (chunked HTTP/1.1, HTTP/2 without content-length) is read in
 * full first, as nginx does with request buffering: in memory up to a limit, then in a
 * private (0600) temp file, removed on dispose and when the process ends (see the hooks below).
 * The spooled body can be replayed, which makes a retry on another backend safe.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, unlinkSync } from 'node:fs';
import { type FileHandle, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  BodyTooLargeError,
  RequestAbortedError,
  RequestTimeoutError,
  type ScgiError,
  SpoolError,
} from '../errors.js';
import { addExitCleanup, removeExitCleanup } from '../upstream/exit-hooks.js';

export interface SpoolOptions {
  /** Bytes kept in memory before the body moves to a temp file. */
  readonly memoryLimit: number;
  /** Largest body accepted; more is `SCGI_ERR_BODY_TOO_LARGE` (413). */
  readonly maxBodySize: number;
  /** Folder for temp files. */
  readonly tmpDir: string;
  /**
   * ms the client may send nothing before the read fails with `SCGI_ERR_REQUEST_TIMEOUT` (408);
   * 0 disables. Node's parser never reports a chunk's announced size (`80000000` or
   * `ffffffffffffffff` and then a stall look like any other stall), so this is what answers it.
   */
  readonly idleTimeout?: number;
}

// Temp files alive in this process. Besides dispose(), they are removed synchronously when the
// process ends (upstream/exit-hooks.ts: 'exit', or a signal that ends it); the hook is registered only
// while files are alive.
const liveFiles = new Set<string>();

function removeAllNow(): void {
  for (const f of liveFiles) {
    try {
      unlinkSync(f);
    } catch {
      // already gone
    }
  }
  liveFiles.clear();
  removeExitCleanup(removeAllNow);
}

function track(file: string): void {
  if (liveFiles.size === 0) addExitCleanup(removeAllNow);
  liveFiles.add(file);
}

function untrack(file: string): void {
  if (liveFiles.delete(file) && liveFiles.size === 0) removeExitCleanup(removeAllNow);
}

/** Number of spool files this process holds right now (for leak checks in tests). */
export function liveSpoolFiles(): number {
  return liveFiles.size;
}

/** A fully read request body: in memory (`chunks`) or in a temp file (`file`). */
export class SpooledBody {
  readonly length: number;
  readonly chunks: readonly Buffer[] | null;
  readonly file: string | null;
  #disposed = false;

  constructor(length: number, chunks: Buffer[] | null, file: string | null) {
    this.length = length;
    this.chunks = chunks;
    this.file = file;
  }

  /** A fresh stream of the bytes (file-backed bodies only). */
  openStream(): Readable {
    if (this.file === null) throw new Error('in-memory body has no file');
    return createReadStream(this.file, { highWaterMark: 64 * 1024 });
  }

  /** Removes the temp file, if any. Safe to call more than once. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const file = this.file;
    if (file !== null) {
      unlink(file).then(
        () => untrack(file),
        () => untrack(file),
      );
    }
  }
}

/**
 * Reads `source` to its end within the limits. Rejects with `SCGI_ERR_BODY_TOO_LARGE`,
 * `SCGI_ERR_REQUEST_ABORTED` or `SCGI_ERR_SPOOL`, and leaves no temp file behind when it does.
 * `signal` aborts the read (client gone).
 */
export function spoolBody(
  source: Readable,
  options: SpoolOptions,
  signal?: AbortSignal,
): Promise<SpooledBody> {
  return new Promise<SpooledBody>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let file: string | null = null;
    let handle: FileHandle | null = null;
    let writing: Promise<unknown> = Promise.resolve();
    let settled = false;
    // As nginx's client_body_timeout: the time between two reads, not for the whole body. Time
    // spent waiting for our own disk (the source paused for a file write) is not the client's.
    let timer: NodeJS.Timeout | null = null;
    let diskWait = false;
    const idle = options.idleTimeout ?? 0;
    const onIdle = () => {
      if (diskWait) timer!.refresh();
      else fail(new RequestTimeoutError(idle));
    };

    const cleanup = () => {
      if (timer !== null) {
        clearTimeout(timer);
        timer = null;
      }
      source.removeListener('data', onData);
      source.removeListener('end', onEnd);
      source.removeListener('error', onError);
      source.removeListener('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: ScgiError) => {
      if (settled) return;
      settled = true;
      cleanup();
      source.pause();
      const f = file;
      const h = handle;
      writing
        .catch(() => {})
        .then(() => h?.close())
        .catch(() => {})
        .then(() => (f === null ? undefined : unlink(f)))
        .catch(() => {})
        .then(() => {
          if (f !== null) untrack(f);
          reject(err);
        });
    };
    const onData = (chunk: Buffer) => {
      timer?.refresh();
      length += chunk.length;
      if (length > options.maxBodySize) {
        fail(new BodyTooLargeError(options.maxBodySize));
        return;
      }
      if (file === null && length <= options.memoryLimit) {
        chunks.push(chunk);
        return;
      }
      if (file === null) {
        file = join(options.tmpDir, `scgi-body-${process.pid}-${randomUUID()}`);
        track(file);
        const path = file;
        const pending = chunks.splice(0, chunks.length);
        pending.push(chunk);
        source.pause();
        diskWait = true;
        writing = open(path, 'wx', 0o600).then(async (h) => {
          handle = h;
          for (const c of pending) await h.write(c);
        });
      } else {
        source.pause();
        diskWait = true;
        const h = handle;
        writing = writing.then(() => (h ?? handle)?.write(chunk));
      }
      writing.then(
        () => {
          diskWait = false;
          timer?.refresh();
          if (!settled) source.resume();
        },
        (err: Error) => fail(new SpoolError(err.message, { cause: err })),
      );
    };
    const onEnd = () => {
      if (settled) return;
      cleanup();
      writing
        .then(() => handle?.close())
        .then(
          () => {
            if (settled) return;
            settled = true;
            resolve(new SpooledBody(length, file === null ? chunks : null, file));
          },
          (err: Error) => {
            // Already cleaned up listeners; remove the file and report.
            settled = false;
            fail(new SpoolError(err.message, { cause: err }));
          },
        );
    };
    const onError = (err: Error) => fail(new RequestAbortedError(err.message, { cause: err }));
    const onClose = () => {
      if (!source.readableEnded) fail(new RequestAbortedError('connection closed during upload'));
    };
    const onAbort = () => fail(new RequestAbortedError('aborted'));

    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    if (idle > 0) timer = setTimeout(onIdle, idle);
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onError);
    source.on('close', onClose);
    source.resume();
  });
}
