/**
 * A view's map: for each logical chunk l, the physical chunk + 1 holding it (0: it reads zeros)
 * and the layer owning that entry (its generation). Kept in pages of PAGE entries that copies
 * share until one of them changes the page (copy on write), and a page nobody wrote is not there
 * at all.
 *
 * Flat arrays cost 8 bytes per chunk of the disk's size, for each open disk: 8 MiB for a 64 GiB
 * disk in 64 KiB chunks, whatever it holds. Ten clients of one golden image held ten copies of
 * its map (issue #16: 181 MiB RSS with 10 clients on 64 GiB disks, against 102 on 512 MiB ones).
 * Paged, a client holds the golden image's pages shared, and its own only where it wrote.
 */

/** Entries per page: 1024 chunks (64 MiB of disk at 64 KiB chunks) in 8 KiB. */
export const PAGE_BITS = 10;
const PAGE = 1 << PAGE_BITS;
const MASK = PAGE - 1;

interface Page {
  /** Physical chunk + 1, or 0. */
  readonly map: Uint32Array;
  /** The layer owning the entry (0 where the entry was never set). */
  readonly gen: Uint32Array;
}

export class ChunkMap {
  /** Page i covers chunks [i*PAGE, (i+1)*PAGE); undefined: every entry 0. */
  private readonly pages: (Page | undefined)[];
  /** 1 where this map alone holds page i and may change it in place; 0 where it is (or may be) shared. */
  private readonly own: Uint8Array;

  private constructor(
    /** Entries (chunks of the view). */
    readonly length: number,
    pages: (Page | undefined)[],
  ) {
    this.pages = pages;
    this.own = new Uint8Array(pages.length);
  }

  /** A map of `length` entries, every one 0 (reads zeros, owned by no layer). */
  static zero(length: number): ChunkMap {
    return new ChunkMap(length, new Array<Page | undefined>(Math.ceil(length / PAGE)).fill(undefined));
  }

  /** Physical chunk + 1 of chunk l, 0 when it reads zeros. */
  at(l: number): number {
    const p = this.pages[l >>> PAGE_BITS];
    return p === undefined ? 0 : p.map[l & MASK]!;
  }

  /** The layer owning chunk l's entry. */
  genAt(l: number): number {
    const p = this.pages[l >>> PAGE_BITS];
    return p === undefined ? 0 : p.gen[l & MASK]!;
  }

  /** Sets chunk l's entry: v (physical + 1, or 0), owned by layer `gen`. */
  set(l: number, v: number, gen: number): void {
    const i = l >>> PAGE_BITS;
    const p = this.own[i] === 1 ? this.pages[i]! : this.privatePage(i);
    p.map[l & MASK] = v;
    p.gen[l & MASK] = gen;
  }

  /** A map equal to this one that shares its pages: whichever of the two changes a page afterwards copies it first. */
  share(): ChunkMap {
    this.own.fill(0);
    return new ChunkMap(this.length, this.pages.slice());
  }

  /** Every entry owned by layer `from` is owned by `into` from now on (a merge of layers). */
  replaceGen(from: number, into: number): void {
    for (let i = 0; i < this.pages.length; i++) {
      let p = this.pages[i];
      if (p === undefined || !p.gen.includes(from)) continue;
      if (this.own[i] === 0) p = this.privatePage(i);
      const g = p.gen;
      for (let k = 0; k < g.length; k++) if (g[k] === from) g[k] = into;
    }
  }

  /** Bytes of the pages this map holds (shared ones included): for the cache's accounting and tests. */
  get bytes(): number {
    let n = 0;
    for (const p of this.pages) if (p !== undefined) n += pageBytes(p);
    return n;
  }

  /** Bytes of the pages only this map holds (the ones it copied or made). */
  get ownBytes(): number {
    let n = 0;
    for (let i = 0; i < this.pages.length; i++) if (this.own[i] === 1) n += pageBytes(this.pages[i]!);
    return n;
  }

  /** Page i as this map's own: a copy of the shared one, or a fresh one of zeros. */
  private privatePage(i: number): Page {
    const old = this.pages[i];
    const p = pageOf(Math.min(PAGE, this.length - i * PAGE));
    if (old !== undefined) {
      p.map.set(old.map);
      p.gen.set(old.gen);
    }
    this.pages[i] = p;
    this.own[i] = 1;
    return p;
  }
}

/** Memory of one page (its map and gen share one allocation). */
function pageBytes(p: Page): number {
  return p.map.byteLength + p.gen.byteLength;
}

/** A page of n entries, map and gen in one allocation. */
function pageOf(n: number): Page {
  const b = new Uint32Array(2 * n);
  return { map: b.subarray(0, n), gen: b.subarray(n) };
}
