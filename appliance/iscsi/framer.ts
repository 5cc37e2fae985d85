import { BHS_LENGTH } from './constants';
import { crc32c } from './crc32c';
import { ahsLength, dataSegmentLength, DecodeError, padded } from './pdu';

/** What the framer hands on: one whole PDU. */
export interface FramedPdu {
  /** BHS + AHS (header digest stripped). */
  header: Buffer;
  /** Data segment without padding or digest. */
  data: Buffer;
  /** True when a negotiated data digest did not match (the session answers with Reject, §7.8). */
  dataDigestError: boolean;
}

/**
 * Turns a TCP byte stream into whole PDUs, whatever the split points (pg-protocol style).
 *
 * Buffers handed out are subarrays of the chunks Node's socket gives us (each 'data' chunk is
 * a fresh allocation Node never reuses) or fresh copies when a PDU spans chunks; the framer
 * never reuses a buffer it handed out, so a consumer may keep them (e.g. write data awaiting
 * the volume). Memory is bounded: a data segment above `maxDataSegment` is a protocol error
 * (it exceeds the MaxRecvDataSegmentLength we declared, §13.12), so a peer can make us hold
 * at most one header plus one data segment.
 */
export class PduFramer {
  headerDigest = false;
  dataDigest = false;

  private headerBuf: Buffer | null = null;
  private headerHave = 0;
  private headerNeed = BHS_LENGTH;
  private header: Buffer | null = null;
  private dataBuf: Buffer | null = null;
  private dataHave = 0;
  private dataNeed = 0;
  private dataLen = 0;
  /** The consumer's buffer receiving this segment's data (placeData), or null. */
  private dest: Buffer | null = null;
  /** Padding and data digest of a segment placed in dest (at most 3 + 4 bytes). */
  private readonly tail = Buffer.alloc(8);

  /**
   * Optional: where a PDU's data segment should land. Asked when a data segment spans socket
   * chunks (and so must be gathered anyway), with the PDU's header and data length; returns a
   * Buffer of exactly that length owned by the consumer, or undefined for a fresh buffer. The
   * data is then copied from the chunks straight into it, and handed on as that buffer: the
   * target places Data-Out data in its command's buffer with one copy instead of two. A segment
   * inside one chunk is still handed on as a view of the chunk, without a copy.
   */
  placeData: ((header: Buffer, length: number) => Buffer | undefined) | null = null;

  constructor(
    public maxDataSegment: number,
    private readonly onPdu: (pdu: FramedPdu) => void,
  ) {}

  /**
   * Feeds bytes; calls onPdu for each complete PDU. Throws DecodeError when the stream cannot
   * be trusted any more (oversized segment, header digest mismatch): the caller drops the
   * connection. onPdu may set the digest flags, which apply to the next PDU (login completion).
   */
  push(chunk: Buffer): void {
    let pos = 0;
    const n = chunk.length;
    while (pos < n) {
      if (this.header === null) {
        if (this.headerHave === 0 && n - pos >= BHS_LENGTH) {
          // Whole BHS in this chunk: read the lengths in place, copy nothing if the header fits.
          const need = this.fullHeaderLength(chunk, pos);
          if (n - pos >= need) {
            this.onHeader(chunk.subarray(pos, pos + need));
            pos += need;
            continue;
          }
          this.headerNeed = need;
          this.headerBuf = Buffer.allocUnsafe(need);
        } else if (this.headerBuf === null) {
          this.headerBuf = Buffer.allocUnsafe(BHS_LENGTH);
          this.headerNeed = BHS_LENGTH;
        }
        const take = Math.min(this.headerNeed - this.headerHave, n - pos);
        chunk.copy(this.headerBuf, this.headerHave, pos, pos + take);
        const before = this.headerHave;
        this.headerHave += take;
        pos += take;
        if (before < BHS_LENGTH && this.headerHave === BHS_LENGTH && this.headerNeed === BHS_LENGTH) {
          // The BHS just completed: now we know how much AHS and digest follow.
          const need = this.fullHeaderLength(this.headerBuf, 0);
          if (need > BHS_LENGTH) {
            const grown = Buffer.allocUnsafe(need);
            this.headerBuf.copy(grown, 0, 0, BHS_LENGTH);
            this.headerBuf = grown;
            this.headerNeed = need;
          }
        }
        if (this.headerHave === this.headerNeed) {
          const h = this.headerBuf;
          this.headerBuf = null;
          this.headerHave = 0;
          this.headerNeed = BHS_LENGTH;
          this.onHeader(h);
        }
      } else {
        const want = this.dataNeed - this.dataHave;
        if (this.dataHave === 0 && n - pos >= want) {
          this.finishData(chunk.subarray(pos, pos + want));
          pos += want;
          continue;
        }
        if (this.dataHave === 0) {
          const dest = this.placeData?.(this.header!, this.dataLen);
          if (dest && dest.length === this.dataLen) this.dest = dest;
          else this.dataBuf = Buffer.allocUnsafe(this.dataNeed);
        }
        const take = Math.min(want, n - pos);
        if (this.dest) this.copyPlaced(chunk, pos, take);
        else chunk.copy(this.dataBuf!, this.dataHave, pos, pos + take);
        this.dataHave += take;
        pos += take;
        if (this.dataHave === this.dataNeed) {
          this.dataHave = 0;
          const placed = this.dest !== null;
          const d = placed ? this.dest! : this.dataBuf!;
          this.dest = null;
          this.dataBuf = null;
          this.finishData(d, placed);
        }
      }
    }
  }

  /** Copies segment bytes [dataHave, dataHave + take) from chunk[pos..]: data to dest, the rest to tail. */
  private copyPlaced(chunk: Buffer, pos: number, take: number): void {
    let at = this.dataHave;
    if (at < this.dataLen) {
      const k = Math.min(take, this.dataLen - at);
      chunk.copy(this.dest!, at, pos, pos + k);
      at += k;
      pos += k;
      take -= k;
    }
    if (take > 0) chunk.copy(this.tail, at - this.dataLen, pos, pos + take);
  }

  /** Bytes buffered for an incomplete PDU (for memory accounting and tests). */
  get pendingBytes(): number {
    return this.headerHave + this.dataHave;
  }

  private fullHeaderLength(b: Buffer, off: number): number {
    return BHS_LENGTH + ahsLength(b, off) + (this.headerDigest ? 4 : 0);
  }

  private onHeader(h: Buffer): void {
    let header = h;
    if (this.headerDigest) {
      const end = h.length - 4;
      if (crc32c(h, 0, 0, end) !== h.readUInt32LE(end)) throw new DecodeError('header digest mismatch', end);
      header = h.subarray(0, end);
    }
    const len = dataSegmentLength(header);
    if (len > this.maxDataSegment) {
      throw new DecodeError(`data segment of ${len} bytes exceeds MaxRecvDataSegmentLength ${this.maxDataSegment}`, 5);
    }
    if (len === 0) {
      this.onPdu({ header, data: EMPTY, dataDigestError: false });
      return;
    }
    this.header = header;
    this.dataLen = len;
    this.dataNeed = padded(len) + (this.dataDigest ? 4 : 0);
  }

  /**
   * Hands on a whole data segment: d holds data, padding and digest, or (placed) just the data,
   * with padding and digest in tail.
   */
  private finishData(d: Buffer, placed = false): void {
    const header = this.header!;
    this.header = null;
    let dataDigestError = false;
    if (this.dataDigest) {
      const end = padded(this.dataLen);
      dataDigestError = placed
        ? crc32c(this.tail, crc32c(d), 0, end - this.dataLen) !== this.tail.readUInt32LE(end - this.dataLen)
        : crc32c(d, 0, 0, end) !== d.readUInt32LE(end);
    }
    this.onPdu({ header, data: placed ? d : d.subarray(0, this.dataLen), dataDigestError });
  }
}

const EMPTY = Buffer.alloc(0);
