import fs from 'node:fs';
import path from 'node:path';
import type { DiskRow, GcResult, ImageRow, SnapshotRow } from './metadata';
import type { StoreInternals } from './internals';

/**
 * One broken invariant. Leaks are repairable; corruption is reported only. `degraded` (a failed
 * fdatasync lost acknowledged writes) is cleared by repair: the loss happened, the metadata does
 * not point at the lost data, and repair is where the admin acknowledges having seen it.
 */
export interface CheckProblem {
  kind:
    | 'integrity'
    | 'segment'
    | 'stray-segment-file'
    | 'dangling-parent'
    | 'cycle'
    | 'orphan-extents'
    | 'extent-out-of-range'
    | 'double-mapped'
    | 'bad-extent'
    | 'dangling-ref'
    | 'orphan-snapshot'
    | 'unreferenced-layer'
    | 'mergeable-layer'
    | 'half-imported'
    | 'free-map'
    | 'leaked-chunks'
    | 'degraded';
  detail: string;
  repairable: boolean;
}

/** What check() found and did. `ok` means nothing was wrong when it started. */
export interface CheckReport {
  ok: boolean;
  problems: CheckProblem[];
  repaired: string[];
  stats: { segments: number; layers: number; extents: number; chunksInUse: number; images: number; disks: number; snapshots: number };
}

/**
 * Verifies the store's invariants against the durable metadata:
 * - SQLite integrity; segments numbered 0..n-1, each file present and full size, no stray files;
 * - every layer's parent exists and no chain has a cycle; every extent's layer exists;
 * - every mapped chunk lies inside a recorded (durable) segment and no chunk is mapped twice;
 * - images, disks and snapshots point at existing layers; every layer is reachable from one
 *   (reference counts right), and none is a foldable single-child layer;
 * - the in-memory free map holds every durable chunk (else it could be handed out twice), and
 *   when nothing is open, holds nothing else (leaks).
 * With repair: leaks are collected (layers, extents, half-imported images, stray files, free map).
 */
export function checkStore(store: StoreInternals, opts: { repair?: boolean }): CheckReport {
  const { meta, space, db } = store;
  const problems: CheckProblem[] = [];
  const repaired: string[] = [];
  const add = (kind: CheckProblem['kind'], detail: string, repairable: boolean) => problems.push({ kind, detail, repairable });

  const health = store.health();
  const deg = health.degraded;
  if (deg) {
    const when = new Date(deg.since).toISOString();
    add(
      'degraded',
      `${deg.failures} fdatasync failure(s) since ${when} (${deg.reason}): writes not yet flushed were lost on disk(s) ${deg.disks.join(', ') || '(none open)'}; their last durable state is kept`,
      !store.hasFailedVolumes(),
    );
  }

  const integrity = db.pragma('integrity_check', { simple: true });
  if (integrity !== 'ok') add('integrity', `sqlite integrity_check: ${String(integrity)}`, false);

  const segs = meta.q.segments.all() as { id: number; bytes: number }[];
  segs.forEach((s, i) => {
    if (s.id !== i) add('segment', `segment ids not contiguous at ${i} (found ${s.id})`, false);
    if (s.bytes !== space.segmentBytes) add('segment', `segment ${s.id} records ${s.bytes} bytes, expected ${space.segmentBytes}`, false);
    try {
      const st = fs.statSync(space.file(s.id));
      if (st.size < space.segmentBytes) add('segment', `segment file ${s.id} is ${st.size} bytes, expected ${space.segmentBytes}`, false);
    } catch {
      add('segment', `segment file ${s.id} is missing`, false);
    }
  });
  // A segment being zero-filled right now is not stray: it is recorded once it is durable.
  const stray = fs
    .readdirSync(store.dir)
    .filter((f) => /^seg-\d+\.dat$/.test(f) && Number(f.slice(4, -4)) >= segs.length && Number(f.slice(4, -4)) !== space.growingIndex);
  for (const f of stray) add('stray-segment-file', `${f} is not recorded (a crash while growing)`, true);

  const layers = new Map<number, number | null>();
  for (const r of db.prepare('SELECT id, parent FROM layers').all() as { id: number; parent: number | null }[]) layers.set(r.id, r.parent);
  for (const [id, parent] of layers) {
    if (parent !== null && !layers.has(parent)) add('dangling-parent', `layer ${id} has missing parent ${parent}`, false);
  }
  // Cycle detection: walk each chain with a visited set per walk, memoising layers known good.
  const good = new Set<number>();
  for (const id of layers.keys()) {
    const seen = new Set<number>();
    let cur: number | null | undefined = id;
    while (cur !== null && cur !== undefined && !good.has(cur)) {
      if (seen.has(cur)) {
        add('cycle', `layer chain from ${id} loops at ${cur}`, false);
        break;
      }
      seen.add(cur);
      cur = layers.get(cur);
    }
    if (cur === null || cur === undefined || good.has(cur)) for (const s of seen) good.add(s);
  }

  const total = space.totalChunks;
  const owner = new Int32Array(total).fill(-1);
  let extents = 0;
  let inUse = 0;
  const orphanLayers = new Set<number>();
  for (const [layer, l, p] of db.prepare('SELECT layer, lchunk, pchunk FROM extents').raw().iterate() as Iterable<[number, number, number]>) {
    extents++;
    if (!layers.has(layer)) orphanLayers.add(layer);
    if (l < 0 || p < -1) add('bad-extent', `layer ${layer} chunk ${l} -> ${p}`, false);
    if (p < 0) continue;
    if (p >= total) {
      add('extent-out-of-range', `layer ${layer} chunk ${l} -> physical ${p}, past the ${total} durable chunks`, false);
      continue;
    }
    if (owner[p] !== -1) add('double-mapped', `physical chunk ${p} is mapped by layers ${owner[p]} and ${layer}`, false);
    else inUse++;
    owner[p] = layer;
    if (!space.isUsed(p)) add('free-map', `physical chunk ${p} is durable but free in memory`, false);
  }
  for (const l of orphanLayers) add('orphan-extents', `extents of missing layer ${l}`, true);

  const images = meta.q.images.all() as ImageRow[];
  const disks = meta.q.disks.all() as DiskRow[];
  const snaps = db.prepare('SELECT * FROM snapshots').all() as SnapshotRow[];
  const roots: number[] = [];
  for (const i of images) {
    if (!layers.has(i.layer)) add('dangling-ref', `image ${i.name} points at missing layer ${i.layer}`, false);
    if (i.state !== 'ready') add('half-imported', `image ${i.name} is in state ${i.state}`, true);
    roots.push(i.layer);
  }
  const diskIds = new Set(disks.map((d) => d.id));
  for (const d of disks) {
    if (!layers.has(d.layer)) add('dangling-ref', `disk ${d.name} points at missing layer ${d.layer}`, false);
    roots.push(d.layer);
  }
  for (const s of snaps) {
    if (!diskIds.has(s.disk_id)) add('orphan-snapshot', `snapshot ${s.id} belongs to missing disk ${s.disk_id}`, true);
    if (!layers.has(s.layer)) add('dangling-ref', `snapshot ${s.id} points at missing layer ${s.layer}`, false);
    roots.push(s.layer);
  }
  // An open read-only view (an export of a deleted snapshot) keeps its layer until it closes.
  roots.push(...meta.pinnedLayers());
  const reachable = new Set<number>();
  for (const r of roots) {
    let cur: number | null | undefined = r;
    while (cur !== null && cur !== undefined && !reachable.has(cur)) {
      reachable.add(cur);
      cur = layers.get(cur);
    }
  }
  const named = new Set(roots);
  const children = new Map<number, number>();
  for (const p of layers.values()) if (p !== null) children.set(p, (children.get(p) ?? 0) + 1);
  const unreferenced: number[] = [];
  const mergeable: number[] = [];
  for (const id of layers.keys()) {
    if (!reachable.has(id)) unreferenced.push(id);
    else if (!named.has(id) && children.get(id) === 1) mergeable.push(id);
  }
  if (unreferenced.length) add('unreferenced-layer', `${unreferenced.length} layer(s) nothing refers to: ${unreferenced.slice(0, 10).join(', ')}`, true);
  if (mergeable.length) add('mergeable-layer', `${mergeable.length} unnamed single-child layer(s) not folded: ${mergeable.slice(0, 10).join(', ')}`, true);

  const quiet = !store.hasOpenVolumes();
  let leaked: number[] = [];
  if (quiet) {
    for (let p = 0; p < total; p++) if (space.isUsed(p) && owner[p] === -1) leaked.push(p);
    if (leaked.length) add('leaked-chunks', `${leaked.length} chunk(s) allocated in memory but mapped by nothing`, true);
  }

  if (opts.repair && problems.some((p) => p.repairable)) {
    if (deg && store.clearDegraded()) repaired.push(`cleared degraded (fdatasync failures since ${new Date(deg.since).toISOString()} acknowledged)`);
    for (const f of stray) {
      fs.rmSync(path.join(store.dir, f), { force: true });
      repaired.push(`removed ${f}`);
    }
    const res: GcResult = { freed: [], merged: [], deleted: [] };
    store.commit(() => {
      for (const l of orphanLayers) {
        for (const r of meta.q.realChunksOf.all(l) as { pchunk: number }[]) if (owner[r.pchunk] === l) res.freed.push(r.pchunk);
        meta.q.deleteExtents.run(l);
      }
      for (const s of snaps) if (!diskIds.has(s.disk_id)) meta.q.deleteSnapshot.run(s.id);
      for (const i of images) if (i.state !== 'ready') meta.q.deleteImage.run(i.id);
      // Collect leaves first (a layer with children is kept until they go).
      const order = [
        ...unreferenced,
        ...mergeable,
        ...images.filter((i) => i.state !== 'ready').map((i) => i.layer),
        ...snaps.filter((s) => !diskIds.has(s.disk_id)).map((s) => s.layer),
      ];
      for (let pass = 0; pass < 3; pass++) for (const l of order) meta.collect(l, res);
      return res;
    });
    if (orphanLayers.size) repaired.push(`deleted extents of ${orphanLayers.size} missing layer(s)`);
    if (res.deleted.length || res.merged.length)
      repaired.push(`collected ${res.deleted.length} layer(s), folded ${res.merged.length}, freed ${res.freed.length} chunk(s)`);
    if (quiet && leaked.length) {
      space.release(leaked);
      repaired.push(`returned ${leaked.length} leaked chunk(s) to the free map`);
      leaked = [];
    }
  }

  return {
    ok: problems.length === 0,
    problems,
    repaired,
    stats: { segments: segs.length, layers: layers.size, extents, chunksInUse: inUse, images: images.length, disks: disks.length, snapshots: snaps.length },
  };
}
