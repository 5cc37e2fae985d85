import type { Metadata } from './metadata';

/** A resolved map: map[l] is 0 (reads zeros) or physical chunk + 1; gen[l] is the layer owning the entry. */
export interface ResolvedMap {
  map: Uint32Array;
  gen: Uint32Array;
}

/**
 * Resolves the chain of layers from `top` down to its root into one map, root first so upper
 * layers override lower ones. One SQLite row per extent of every layer in the chain (1-2 µs a
 * row: a 32 GiB image holding 20 GiB of data is 320k rows).
 */
export function resolveChain(meta: Metadata, top: number, chunks: number): ResolvedMap {
  const out = { map: new Uint32Array(chunks), gen: new Uint32Array(chunks) };
  for (const layer of meta.chain(top).reverse()) applyLayer(meta, layer, out);
  return out;
}

/** Applies one layer's extents over a resolved map. */
export function applyLayer(meta: Metadata, layer: number, out: ResolvedMap): void {
  const chunks = out.map.length;
  for (const [l, p] of meta.q.extentsRaw.iterate(layer) as Iterable<[number, number]>) {
    if (l >= chunks) continue;
    out.map[l] = p < 0 ? 0 : p + 1;
    out.gen[l] = layer;
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
  private readonly cache = new Map<string, ResolvedMap>();
  private bytes = 0;

  constructor(
    private readonly meta: Metadata,
    private readonly maxBytes: number,
  ) {}

  /** A copy of the resolved map of the frozen chain ending at `layer`, `chunks` entries long. */
  copy(layer: number, chunks: number): ResolvedMap {
    const key = `${layer}:${chunks}`;
    let r = this.cache.get(key);
    if (r) {
      this.cache.delete(key);
      this.cache.set(key, r);
    } else {
      r = resolveChain(this.meta, layer, chunks);
      const size = chunks * 8;
      if (size <= this.maxBytes) {
        this.cache.set(key, r);
        this.bytes += size;
        for (const [k, old] of this.cache) {
          if (this.bytes <= this.maxBytes) break;
          this.cache.delete(k);
          this.bytes -= old.map.length * 8;
        }
      }
    }
    return { map: r.map.slice(), gen: r.gen.slice() };
  }

  /** Forgets every map (a layer was deleted or folded). */
  clear(): void {
    this.cache.clear();
    this.bytes = 0;
  }
}
