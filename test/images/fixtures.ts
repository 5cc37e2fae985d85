import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** True when qemu-img runs (package qemu-utils). */
export const haveQemuImg = spawnSync('qemu-img', ['--version']).status === 0;

/** The bytes a leak would show: repeated through the secret file so any chunk of it carries them. */
export const MARKER = 'NB-TEST-SECRET-7f3a9c';

/** Writes a 1 MiB "host file" full of MARKER (a stand-in for /etc/shadow; tests never touch the real one). */
export function writeSecret(file: string): void {
  const line = Buffer.from(`${MARKER}\n`);
  const buf = Buffer.alloc(1024 * 1024);
  for (let o = 0; o + line.length <= buf.length; o += line.length) line.copy(buf, o);
  fs.writeFileSync(file, buf);
}

/** True when any file below `dir` holds MARKER (the store's segments after a refused import, say). */
export function dirLeaks(dir: string): boolean {
  const marker = Buffer.from(MARKER);
  // A walk of our own that never follows a symlink: the tests plant symlinks to the secret's
  // folder, and Node 24's readdirSync({ recursive: true }) descends into symlinked directories
  // (Node 20's did not), which would find the secret through the test's own link.
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && dirLeaks(p)) return true;
    if (e.isFile() && fs.readFileSync(p).includes(marker)) return true;
  }
  return false;
}

/** A qcow2 whose backing file is `target` (raw). */
export function qcow2WithBacking(file: string, target: string): void {
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', target, file, '1M']);
}

/**
 * A qcow2 whose guest data lives in the external raw file `target`. qemu-img create truncates its
 * data file, so it is pointed at a scratch name first and the secret written there afterwards.
 */
export function qcow2WithDataFile(file: string, target: string): void {
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `data_file=${target},data_file_raw=on`, file, '1M']);
  writeSecret(target);
}

/** A vmdk descriptor (monolithicFlat) whose one extent is `target`. */
export function vmdkDescriptor(file: string, target: string): void {
  fs.writeFileSync(
    file,
    [
      '# Disk DescriptorFile',
      'version=1',
      'CID=12345678',
      'parentCID=ffffffff',
      'createType="monolithicFlat"',
      '',
      `RW 2048 FLAT "${target}" 0`,
      '',
      'ddb.adapterType = "ide"',
      '',
    ].join('\n'),
  );
}

/** A monolithic sparse vmdk whose parent (backing file, `parentFileNameHint`) is `parentVmdk`. */
export function vmdkWithParent(file: string, parentVmdk: string): void {
  execFileSync('qemu-img', ['create', '-q', '-f', 'vmdk', '-F', 'vmdk', '-b', parentVmdk, file]);
}

/** Converts a raw file to `format` with qemu-img. */
export function convert(raw: string, format: string, out: string): void {
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', format, raw, out]);
}
