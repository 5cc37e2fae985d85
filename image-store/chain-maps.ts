import { ChunkMap } from './chunk-map';
import type { Metadata } from './metadata';

/**
 * Resolves the chain of layers from `top` down to its root into one map, root first so upper
 * layers override lower ones. One SQLite row per extent of every layer in the chain (1-2 µs a
 * row: a 32 GiB image holding 20 GiB of data is 320k rows).
 */
export function resolveChain(meta: Metadata, top: number, chunks: number): ChunkMap {
  const out = ChunkMap.zero(chunks);
  for (const layer of meta.chain(top).reverse()) applyLayer(meta, layer, out);
  return out;
}

/** Applies one layer's extents over a resolved map. */
export function applyLayer(meta: Metadata, layer: number, out: ChunkMap): void {
  const chunks = out.length;
  for (const [l, p] of meta.q.extentsRaw.iterate(layer) as Iterable<[number, number]>) {
    if (l < chunks) out.set(l, p < 0 ? 0 : p + 1, layer);
  }
}

/**
 * Resolved maps of frozen chains (below a disk's writable top: its image, its snapshots), kept so
 * that every open of a client disk copies its image's map instead of reading the image's extents
 * from SQLite again: ten clients of one golden image, each logging in twice per boot (iPXE, then
 * the initramfs), read it once. Frozen layers change only through collection (delete, fold),
 * which clears the cache (ImageStore.commit). At most `maxBytes` of maps are kept, least
 * recently used first out.
 */
export class ChainMaps {
  private readonly cache = new Map<string, ChunkMap>();
  private bytes = 0;

  constructor(
    private readonly meta: Metadata,
    private readonly maxBytes: number,
  ) {}

  /**
   * A copy of the resolved map of the frozen chain ending at `layer`, `chunks` entries long. It
   * shares its pages with the cached one (and every other copy) until it changes them.
   */
  copy(layer: number, chunks: number): ChunkMap {
    const key = `${layer}:${chunks}`;
    let r = this.cache.get(key);
    if (r) {
      this.cache.delete(key);
      this.cache.set(key, r);
    } else {
      r = resolveChain(this.meta, layer, chunks);
      const size = r.bytes;
      if (size <= this.maxBytes) {
        this.cache.set(key, r);
        this.bytes += size;
        for (const [k, old] of this.cache) {
          if (this.bytes <= this.maxBytes) break;
          this.cache.delete(k);
          this.bytes -= old.bytes;
        }
      }
    }
    return r.share();
  }

  /** Forgets every map (a layer was deleted or folded). */
  clear(): void {
    this.cache.clear();
    this.bytes = 0;
  }
}
