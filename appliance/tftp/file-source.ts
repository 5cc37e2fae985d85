/**
 * Where the TFTP server gets files. The server only sees the FileSource interface, so boot
 * policy can put generated files (per-client scripts, menus) in front of the directories.
 */
import { constants as fsc } from 'node:fs';
import { open, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** An opened file the server reads sequentially (and only once) while it serves a transfer. */
export interface TftpFile {
  /** Size in bytes when opened; the transfer sends at most this many (and answers tsize with it). */
  readonly size: number;
  /** Reads up to length bytes at position into buf at offset; resolves the count (0 at end of file). */
  read(buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  /** Releases the file; called exactly once when the transfer ends. */
  close(): Promise<void>;
}

/** Why a path cannot be served: maps onto TFTP ERROR 1 (notFound) or 2 (accessViolation). */
export interface FileRefusal {
  refused: 'notFound' | 'accessViolation';
  /** Sent to the client in the ERROR packet and logged: say what is wrong, not where our root is. */
  message: string;
}

/** Who asks: generated per-client files are served only to the machine they are for. */
export interface TftpPeer {
  address: string;
}

/** Resolves a requested file name (as the client sent it) to an opened file or a refusal. */
export interface FileSource {
  resolve(filename: string, peer?: TftpPeer): Promise<TftpFile | FileRefusal>;
}

/** Narrows a resolve() result. */
export function isRefusal(r: TftpFile | FileRefusal): r is FileRefusal {
  return (r as FileRefusal).refused !== undefined;
}

/**
 * Tries sources in order; the first answer other than "not found" wins. Lets boot policy put
 * generated files in front of the directories: chainFileSources(generated, directories).
 */
export function chainFileSources(...sources: FileSource[]): FileSource {
  return {
    async resolve(filename, peer) {
      let last: TftpFile | FileRefusal = { refused: 'notFound', message: 'file not found' };
      for (const src of sources) {
        last = await src.resolve(filename, peer);
        if (!isRefusal(last) || last.refused !== 'notFound') return last;
      }
      return last;
    },
  };
}

/** A TftpFile over bytes in memory (generated files). */
export function memoryFile(data: Buffer): TftpFile {
  return {
    size: data.length,
    async read(buf, offset, length, position) {
      if (position >= data.length) return 0;
      return data.copy(buf, offset, position, Math.min(data.length, position + length));
    },
    async close() {},
  };
}

class HandleFile implements TftpFile {
  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}
  async read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const { bytesRead } = await this.fh.read(buf, offset, length, position);
    return bytesRead;
  }
  close(): Promise<void> {
    return this.fh.close();
  }
}

/**
 * Splits a client's file name into safe relative segments, or says why it is refused.
 * Refused: NUL and other control characters, backslashes (a Windows-style `..\` would otherwise
 * slip past a check for `/..`), absolute paths, and any `..` segment. `.` and empty segments
 * (`a//b`) are dropped.
 */
export function safeSegments(filename: string): string[] | FileRefusal {
  if (filename.length === 0) return { refused: 'notFound', message: 'empty file name' };
  if (/[\u0000-\u001f\u007f]/.test(filename)) return { refused: 'accessViolation', message: 'control character in file name' };
  if (filename.includes('\\')) return { refused: 'accessViolation', message: 'backslash in file name' };
  if (filename.startsWith('/')) return { refused: 'accessViolation', message: 'absolute paths are not served' };
  const segments = filename.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) return { refused: 'accessViolation', message: "'..' in file name" };
  if (segments.length === 0) return { refused: 'notFound', message: 'file not found' };
  return segments;
}

function within(root: string, candidate: string): boolean {
  return candidate.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

/** One served directory. */
export interface TftpRoot {
  dir: string;
  /**
   * Follow symlinks that leave the directory. Only for directories a package manager owns:
   * Debian's /usr/lib/ipxe/ipxe.efi is a symlink to /boot/ipxe.efi. Client names are still
   * refused when they contain '..' or start with '/', so a client reaches only what the
   * directory's own symlinks point at.
   */
  trustSymlinks?: boolean;
}

/**
 * Serves regular files from a list of directories, first match wins. A name is looked up in each
 * root in turn; the found path is resolved with realpath and must still lie inside that root's
 * realpath, so a symlink pointing out of the root is refused (access violation) instead of
 * followed (unless the root trusts its symlinks). Roots that do not exist are skipped (ipxeDir
 * is absent when the ipxe package is not installed). Files are opened O_RDONLY|O_NOFOLLOW on the
 * resolved path and checked to be regular.
 */
export class DirectoryFileSource implements FileSource {
  private readonly roots: TftpRoot[];
  constructor(roots: readonly (string | TftpRoot)[]) {
    this.roots = roots.map((r) => (typeof r === 'string' ? { dir: r } : r));
  }

  async resolve(filename: string): Promise<TftpFile | FileRefusal> {
    const segments = safeSegments(filename);
    if (!Array.isArray(segments)) return segments;
    for (const root of this.roots) {
      let realRoot: string;
      try {
        realRoot = await realpath(root.dir);
      } catch {
        continue;
      }
      let real: string;
      try {
        real = await realpath(path.join(realRoot, ...segments));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        if (code === 'EACCES') return { refused: 'accessViolation', message: 'permission denied' };
        if (code === 'ELOOP') return { refused: 'accessViolation', message: 'symlink loop' };
        throw err;
      }
      if (!root.trustSymlinks && !within(realRoot, real)) return { refused: 'accessViolation', message: 'path leaves the served directory' };
      let fh: FileHandle;
      try {
        fh = await open(real, fsc.O_RDONLY | fsc.O_NOFOLLOW);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue; // removed between realpath and open
        return { refused: 'accessViolation', message: code === 'EACCES' ? 'permission denied' : `cannot open (${code})` };
      }
      const st = await fh.stat();
      if (!st.isFile()) {
        await fh.close();
        return { refused: 'accessViolation', message: 'not a regular file' };
      }
      return new HandleFile(fh, st.size);
    }
    return { refused: 'notFound', message: 'file not found' };
  }
}

/**
 * The roots the appliance serves: the extra directory (config tftp.root, '' = <dataDir>/tftp),
 * strictly contained, and the iPXE binaries (config boot.ipxeDir), whose package symlinks are
 * followed. The extra root comes first so an admin can drop in a custom iPXE build (e.g. one
 * with an embedded script) under the packaged binary's name.
 */
export function defaultTftpRoots(cfg: { dataDir: string; boot: { ipxeDir: string }; tftp: { root: string } }): TftpRoot[] {
  return [{ dir: cfg.tftp.root || path.join(cfg.dataDir, 'tftp') }, { dir: cfg.boot.ipxeDir, trustSymlinks: true }];
}
