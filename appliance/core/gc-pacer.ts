/**
 * Frees socket read buffers sooner (issue #16). Node gives every socket read a buffer of its own,
 * 64 KiB allocated with malloc and shrunk to what arrived, outside V8's heap; a server socket
 * cannot read into a buffer of ours (`onread` is for client sockets). V8 frees dead ones at a
 * scavenge of the young generation, or at a full GC once external memory grew by 64 MiB since
 * the last one. A 1 MiB write is 16 such reads and little JavaScript, so a scavenge rarely comes
 * first: measured, a run of 1 MiB writes left up to 64 MiB of dead read buffers, and glibc kept
 * most of that memory afterwards (RSS +35 MiB). A pacer runs a minor GC (a scavenge: with the
 * unit's --max-semi-space-size=1, about a tenth of a millisecond) after every `everyBytes` of
 * input, which bounds that garbage to about `everyBytes`.
 *
 * It needs the `gc` function that `--expose-gc` puts on the global object (the systemd unit's
 * NODE_OPTIONS); without it, it does nothing.
 */
export interface GcPacer {
  /** Counts bytes that arrived on a socket; may run a minor GC. */
  received(bytes: number): void;
}

type GcFunction = (options?: { type?: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;

/** A pacer over `gc` (default: the one --expose-gc provides), or a no-op when there is none. */
export function gcPacer(everyBytes: number, gc: GcFunction | undefined = (globalThis as { gc?: GcFunction }).gc): GcPacer {
  if (!gc) return { received: () => {} };
  let since = 0;
  return {
    received(bytes) {
      since += bytes;
      if (since < everyBytes) return;
      since = 0;
      gc({ type: 'minor' });
    },
  };
}

/** Input between two minor GCs in the product (issue #16: 16 MiB left +25 MiB after a run of 1 MiB writes, 4 MiB +6). */
export const GC_PACE_BYTES = 4 * 1024 * 1024;
