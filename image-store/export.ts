import { Readable } from 'node:stream';
import { encodeQcow2Header, encodeQcow2Metadata, planQcow2, type Qcow2Plan } from './qcow2';
import type { BlockVolume } from './block-volume';

/**
 * What an export reads: a read-only volume that can say, synchronously, which runs hold data
 * (StoreVolume from its resolved map; a backend that cannot answer cheaply reports one mapped run).
 */
export interface ExportableVolume extends Pick<BlockVolume, 'blockCount' | 'read'> {
  mappedRuns(): Iterable<{ lba: number; blocks: number; mapped: boolean }>;
  close(): Promise<void> | void;
}

export type ExportFormat = 'raw' | 'qcow2';

const RAW_PIECE_BLOCKS = 2048; // 1 MiB reads
const QCOW2_CLUSTER_BITS = 16;

/**
 * Streams a read-only volume as raw or qcow2. The volume is closed when the stream ends or is
 * destroyed (an aborted HTTP download), which releases the pin on the snapshot's layer.
 * qcow2: clusters holding mapped chunks are written (unmapped ones stay unallocated, reading as
 * zeros), so the file is about as large as the data, and is laid out in one forward pass.
 * The layout is fixed when the stream is made, so `size` is exact (a live disk's export reads
 * its current data; export a snapshot for a point-in-time copy).
 */
export function exportStream(vol: ExportableVolume, format: ExportFormat): ExportStream {
  let gen: AsyncGenerator<Buffer>;
  let size: number;
  if (format === 'raw') {
    gen = rawChunks(vol);
    size = vol.blockCount * 512;
  } else {
    const plan = planFor(vol);
    gen = qcow2Chunks(vol, plan);
    size = plan.totalClusters * 2 ** plan.clusterBits;
  }
  const wrapped = (async function* () {
    try {
      yield* gen;
    } finally {
      await vol.close();
    }
  })();
  return Object.assign(Readable.from(wrapped, { objectMode: false, highWaterMark: 4 << 20 }), { size });
}

/** An export: a byte stream whose total length is known up front (HTTP Content-Length). */
export type ExportStream = Readable & { size: number };

async function* rawChunks(vol: ExportableVolume): AsyncGenerator<Buffer> {
  for (let lba = 0; lba < vol.blockCount; lba += RAW_PIECE_BLOCKS) {
    yield await vol.read(lba, Math.min(RAW_PIECE_BLOCKS, vol.blockCount - lba));
  }
}

/** The qcow2 layout for the volume as it is now: one data cluster per cluster holding mapped chunks. */
function planFor(vol: ExportableVolume): Qcow2Plan {
  const clusterBlocks = 2 ** QCOW2_CLUSTER_BITS / 512;
  const clusters: number[] = [];
  for (const r of vol.mappedRuns()) {
    if (!r.mapped) continue;
    const first = Math.floor(r.lba / clusterBlocks);
    const last = Math.floor((r.lba + r.blocks - 1) / clusterBlocks);
    for (let c = first; c <= last; c++) if (clusters[clusters.length - 1] !== c) clusters.push(c);
  }
  return planQcow2(vol.blockCount * 512, clusters, QCOW2_CLUSTER_BITS);
}

async function* qcow2Chunks(vol: ExportableVolume, plan: Qcow2Plan): AsyncGenerator<Buffer> {
  const cs = 2 ** QCOW2_CLUSTER_BITS;
  const clusterBlocks = cs / 512;
  const clusters = plan.dataClusters;
  yield encodeQcow2Header(plan);
  yield* encodeQcow2Metadata(plan);
  for (const c of clusters) {
    const lba = c * clusterBlocks;
    const n = Math.min(clusterBlocks, vol.blockCount - lba);
    const data = await vol.read(lba, n);
    yield n === clusterBlocks ? data : Buffer.concat([data, Buffer.alloc(cs - data.length)]);
  }
}
