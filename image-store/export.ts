import { Readable } from 'node:stream';
import { encodeQcow2Header, encodeQcow2Metadata, planQcow2 } from './qcow2';
import type { StoreVolume } from './volume';

export type ExportFormat = 'raw' | 'qcow2';

const RAW_PIECE_BLOCKS = 2048; // 1 MiB reads
const QCOW2_CLUSTER_BITS = 16;

/**
 * Streams a read-only volume as raw or qcow2. The volume is closed when the stream ends or is
 * destroyed (an aborted HTTP download), which releases the pin on the snapshot's layer.
 * qcow2: clusters holding mapped chunks are written (unmapped ones stay unallocated, reading as
 * zeros), so the file is about as large as the data, and is laid out in one forward pass.
 */
export function exportStream(vol: StoreVolume, format: ExportFormat): Readable {
  const gen = format === 'raw' ? rawChunks(vol) : qcow2Chunks(vol);
  const wrapped = (async function* () {
    try {
      yield* gen;
    } finally {
      await vol.close();
    }
  })();
  return Readable.from(wrapped, { objectMode: false, highWaterMark: 4 << 20 });
}

async function* rawChunks(vol: StoreVolume): AsyncGenerator<Buffer> {
  for (let lba = 0; lba < vol.blockCount; lba += RAW_PIECE_BLOCKS) {
    yield await vol.read(lba, Math.min(RAW_PIECE_BLOCKS, vol.blockCount - lba));
  }
}

async function* qcow2Chunks(vol: StoreVolume): AsyncGenerator<Buffer> {
  const cs = 2 ** QCOW2_CLUSTER_BITS;
  const clusterBlocks = cs / 512;
  const size = vol.blockCount * 512;
  const clusters: number[] = [];
  const runs = await vol.mapping(0, vol.blockCount);
  for (const r of runs) {
    if (!r.mapped) continue;
    const first = Math.floor(r.lba / clusterBlocks);
    const last = Math.floor((r.lba + r.blocks - 1) / clusterBlocks);
    for (let c = first; c <= last; c++) if (clusters[clusters.length - 1] !== c) clusters.push(c);
  }
  const plan = planQcow2(size, clusters, QCOW2_CLUSTER_BITS);
  yield encodeQcow2Header(plan);
  yield* encodeQcow2Metadata(plan);
  for (const c of clusters) {
    const lba = c * clusterBlocks;
    const n = Math.min(clusterBlocks, vol.blockCount - lba);
    const data = await vol.read(lba, n);
    yield n === clusterBlocks ? data : Buffer.concat([data, Buffer.alloc(cs - data.length)]);
  }
}
