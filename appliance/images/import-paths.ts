import fs from 'node:fs';
import path from 'node:path';
import { ApiError, notFound } from '../core/errors';

/** The import directory every appliance has, under its data directory. */
export const importDirOf = (dataDir: string) => path.join(dataDir, 'import');

/** The directories a server-side import may read from: `<dataDir>/import` first, then config `images.importDirs`. */
export function importDirs(dataDir: string, configured: readonly string[]): string[] {
  return [importDirOf(dataDir), ...configured.filter((d) => d !== '').map((d) => path.resolve(d))];
}

/** Creates `<dataDir>/import` (0750: the service user and its group, e.g. whoever copies images in). */
export function ensureImportDir(dataDir: string): void {
  fs.mkdirSync(importDirOf(dataDir), { recursive: true, mode: 0o750 });
}

/** True when `real` is `dir` itself or below it; both already resolved (no symlinks, no `..`). */
const inside = (real: string, dir: string) => real.startsWith(dir.endsWith(path.sep) ? dir : dir + path.sep);

/**
 * The real paths of `dirs` that exist now. Resolved at each call, not at start: a removable disk
 * mounted later counts, and a directory swapped for a symlink is followed to where it now points.
 */
function realDirs(dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of dirs) {
    try {
      out.push(fs.realpathSync.native(d));
    } catch {
      // Not there (yet): nothing can be inside it.
    }
  }
  return out;
}

/** True when `file`, symlinks resolved, is inside one of `dirs` (the CLI asks before choosing path or upload). */
export function isInImportDir(file: string, dirs: readonly string[]): boolean {
  try {
    const real = fs.realpathSync.native(file);
    return realDirs(dirs).some((d) => inside(real, d));
  } catch {
    return false;
  }
}

const refused = (file: string, dirs: readonly string[]) =>
  new ApiError('IMPORT_PATH_REFUSED', 403, `${file} is not inside an import directory; put the image in ${dirs.join(' or ')}, or upload it`, { allowed: dirs });

/** An import file opened for reading after its real path was checked; close `fd` when done. */
export interface OpenedImport {
  fd: number;
  /** Where the open descriptor really points (from /proc/self/fd). */
  realPath: string;
  /** A name reopening exactly this file (not the path it was asked by), for readers in this process. */
  procPath: string;
}

/**
 * Opens `file` for an import if it lies inside one of `dirs`. The path is resolved (symlinks,
 * `..`) and checked first, so nothing outside is opened; then the open descriptor's own path
 * (/proc/self/fd/N) is checked again, so a symlink or directory swapped in between the two steps
 * is caught. Readers then use the descriptor, never the path again.
 * Throws ApiError 403 IMPORT_PATH_REFUSED, 404 FILE_NOT_FOUND or 400 NOT_A_FILE.
 */
export function openImportFile(file: string, dirs: readonly string[]): OpenedImport {
  const allowed = realDirs(dirs);
  let real: string;
  try {
    real = fs.realpathSync.native(file);
  } catch {
    // Say "not found" only inside an import directory: outside, do not tell what exists.
    const lexical = path.resolve(file);
    if (allowed.some((d) => inside(lexical, d)) || dirs.some((d) => inside(lexical, path.resolve(d)))) throw notFound('FILE_NOT_FOUND', `no file at ${file}`);
    throw refused(file, dirs);
  }
  if (!allowed.some((d) => inside(real, d))) throw refused(file, dirs);
  // NONBLOCK: a FIFO planted in the directory cannot stall open(); NOCTTY: nor can a terminal become ours.
  let fd: number;
  try {
    fd = fs.openSync(real, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (err) {
    throw new ApiError('FILE_NOT_READABLE', 400, `cannot open ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const procPath = `/proc/self/fd/${fd}`;
    let opened: string;
    try {
      opened = fs.readlinkSync(procPath);
    } catch {
      throw new ApiError('IMPORT_PATH_REFUSED', 403, `cannot verify where ${file} leads (no /proc/self/fd)`);
    }
    if (!allowed.some((d) => inside(opened, d))) throw refused(file, dirs);
    if (!fs.fstatSync(fd).isFile()) throw new ApiError('NOT_A_FILE', 400, `${file} is not a regular file`);
    return { fd, realPath: opened, procPath };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}
