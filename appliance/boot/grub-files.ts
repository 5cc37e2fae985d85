/**
 * The GRUB road's files over TFTP (issue #15), in front of the served directories:
 *   shimx64.efi, grubx64.efi, shimaa64.efi, grubaa64.efi   the signed binaries (public)
 *   grub/grub.cfg                                           the dispatcher (public, no secret)
 *   grub/clients/<mac>.cfg, grub/clients/<mac>/{linux,initrd}
 *       the client's config (it carries its CHAP credentials) and its own kernel and initramfs,
 *       read from its current disk at each request; served only to the machine that has that MAC
 *       in the neighbour table (the same binding as the iPXE script's one-time link) and only for
 *       a client on the GRUB road.
 * Everything else falls through to the directories (notFound).
 */
import type { Logger } from '../core/log';
import type { BootEventSink, ClientDirectory, ClientRecord } from '../core/model';
import { normaliseMac } from '../core/model';
import type { FileRefusal, FileSource, TftpFile, TftpPeer } from '../tftp/file-source';
import { memoryFile } from '../tftp/file-source';
import { type FoundKernel, type FsOpener, findKernel, KernelNotFound } from './disk-files/kernel-lookup';
import type { ByteReader } from './disk-files/partitions';
import { PartitionTableError } from './disk-files/partitions';
import { GrubConfigError, renderGrubClientConfig, renderGrubDispatcher } from './grub-config';
import type { NeighbourLookup } from './neighbours';
import { type SignedBinaries, signedNames } from './signed-binaries';

/** A client disk opened for reading its boot files. */
export interface OpenedDisk {
  read: ByteReader;
  size: number;
  close(): Promise<void>;
}

export interface GrubFilesDeps {
  clients: ClientDirectory;
  /** True when this client boots by the GRUB road on the architecture it last asked with. */
  onGrubRoad(client: ClientRecord): boolean;
  signed: SignedBinaries;
  /** Opens the client's current boot disk read-only. */
  openDisk(client: ClientRecord): Promise<OpenedDisk>;
  /** File systems to look for kernels on (FAT, ext4). */
  openers: readonly FsOpener[];
  neighbours: NeighbourLookup;
  serverAddress(): string;
  iscsiPort: number;
  /** Where the admin assigns machines (shown by the dispatcher to an unassigned one). */
  uiHint: string;
  /** Opens a file of the host for the signed binaries (DirectoryFileSource semantics). */
  openHostFile(path: string): Promise<TftpFile | FileRefusal>;
  events?: BootEventSink;
  log: Logger;
}

const CLIENT_FILE = /^grub\/clients\/([0-9a-f:-]{12,17})(\.cfg|\/linux|\/initrd)$/i;

export class GrubFileSource implements FileSource {
  constructor(private readonly d: GrubFilesDeps) {}

  async resolve(filename: string, peer?: TftpPeer): Promise<TftpFile | FileRefusal> {
    const name = filename.replace(/^\/+/, '');
    for (const arch of ['x64', 'aa64'] as const) {
      const pair = this.d.signed[arch];
      const names = signedNames(arch);
      if (pair && name === names.shim) return this.d.openHostFile(pair.shim);
      if (pair && name === names.grub) return this.d.openHostFile(pair.grub);
    }
    if (name === 'grub/grub.cfg') return memoryFile(Buffer.from(renderGrubDispatcher({ uiHint: this.d.uiHint })));
    const m = CLIENT_FILE.exec(name);
    if (!m) return { refused: 'notFound', message: 'file not found' };
    const mac = normaliseMac(m[1]);
    const client = mac ? this.d.clients.byMac(mac) : undefined;
    if (!mac || !client || !this.d.onGrubRoad(client)) return { refused: 'notFound', message: 'no GRUB boot entry for that MAC' };
    const asker = peer ? await this.d.neighbours(peer.address) : undefined;
    if (asker !== mac) {
      this.d.log.warn({ mac, peer: peer?.address, asker }, 'GRUB road file asked for by another machine: refused');
      return { refused: 'accessViolation', message: `served only to ${mac} itself` };
    }
    const suffix = m[2]!.toLowerCase();
    const kind = suffix === '.cfg' ? 'config' : suffix === '/linux' ? 'kernel' : 'initrd';
    return this.clientFile(client, kind);
  }

  private async clientFile(client: ClientRecord, kind: 'config' | 'kernel' | 'initrd'): Promise<TftpFile | FileRefusal> {
    let disk: OpenedDisk | undefined;
    try {
      disk = await this.d.openDisk(client);
      const found = await findKernel(disk.read, disk.size, this.d.openers);
      if (kind === 'config') {
        const text = renderGrubClientConfig({
          client,
          serverAddress: this.d.serverAddress(),
          iscsiPort: this.d.iscsiPort,
          cmdline: found.entry.cmdline,
          hasInitrd: found.initrd !== undefined,
        });
        await found.close();
        await disk.close();
        this.d.events?.record({
          mac: client.mac,
          stage: 'grub-config',
          detail: { kernel: found.entry.kernel, initrd: found.entry.initrd ?? '', from: found.entry.source },
        });
        return memoryFile(Buffer.from(text));
      }
      const file = kind === 'kernel' ? found.kernel : found.initrd;
      if (!file) {
        await found.close();
        await disk.close();
        return { refused: 'notFound', message: 'the boot entry has no initramfs' };
      }
      this.d.events?.record({ mac: client.mac, stage: 'kernel-fetched', detail: { file: kind, bytes: file.size } });
      const opened = disk;
      return diskFile(file, async () => {
        await found.close();
        await opened.close();
      });
    } catch (err) {
      await disk?.close().catch(() => undefined);
      if (err instanceof KernelNotFound || err instanceof PartitionTableError || err instanceof GrubConfigError) {
        this.d.events?.record({ mac: client.mac, stage: 'boot-error', detail: { road: 'grub', reason: err.message.slice(0, 300) } });
        this.d.log.warn({ mac: client.mac, reason: err.message }, 'GRUB road: cannot boot this client');
        return { refused: 'notFound', message: err.message.slice(0, 200) };
      }
      throw err;
    }
  }
}

/** A TftpFile over a file found on an opened client disk; closing it closes the disk. */
function diskFile(file: FoundKernel['kernel'], close: () => Promise<void>): TftpFile {
  return {
    size: file.size,
    async read(buf, offset, length, position) {
      if (position >= file.size) return 0;
      const data = await file.read(position, Math.min(length, file.size - position));
      return data.copy(buf, offset);
    },
    close,
  };
}

/** A ByteReader over a block volume's read(lba, blocks). */
export function volumeReader(vol: { blockSize: number; blockCount: number; read(lba: number, blocks: number): Promise<Buffer> }): ByteReader {
  const bs = vol.blockSize;
  const end = bs * vol.blockCount;
  return async (offset, length) => {
    const stop = Math.min(end, offset + length);
    if (offset >= stop) return Buffer.alloc(0);
    const first = Math.floor(offset / bs);
    const last = Math.ceil(stop / bs);
    const data = await vol.read(first, last - first);
    return data.subarray(offset - first * bs, stop - first * bs);
  };
}
