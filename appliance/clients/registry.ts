import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/clock';
import { ApiError, badRequest, conflict, notFound } from '../core/errors';
import {
  type BootRoadSetting,
  normaliseMac,
  type ChapCredentials,
  type ClientDirectory,
  type ClientRecord,
  type NextBoot,
  type SnapshotSchedule,
} from '../core/model';
import type { DiskStore } from './disk-store';

/** What a caller may set when adding or changing a client. */
export interface ClientInput {
  name?: string;
  initiators?: string[];
  chap?: ChapCredentials | null;
  ip?: string | null;
  /** The boot road (issue #15): 'auto' (by architecture and boot.uefiX64Road), 'ipxe' or 'grub'. */
  road?: BootRoadSetting;
}

/** One of a client's named disks. */
export interface ClientDisk {
  name: string;
  /** The disk's name in the image store. */
  disk: string;
  /** Its iSCSI target (LUN 0). */
  target: string;
  image: string;
  /** Throw-away clones made for one boot (one-shot image, rescue); replaced at each use. */
  throwaway: boolean;
  createdAt: number;
}

/** What a boot that starts now gets: the record as the script sees it. */
export interface BootSelection {
  client: ClientRecord;
  /** Why this disk: 'default' | 'next-boot' | 'rescue'. */
  reason: 'default' | 'next-boot' | 'rescue';
}

interface Row {
  mac: string;
  name: string;
  lun: number;
  initiators: string;
  chap: string | null;
  ip: string | null;
  created_at: number;
  boot_disk: string;
  next_boot: string | null;
  schedule: string | null;
  road: string;
}

interface DiskRow {
  mac: string;
  name: string;
  image: string;
  throwaway: number;
  created_at: number;
}

const IQN = /^(iqn\.\d{4}-\d{2}\.[^\s]+|eui\.[0-9a-fA-F]{16}|naa\.[0-9a-fA-F]{16,32})$/;
/** Named disks: lower-case (they become part of an IQN, RFC 3722 normalises to lower case). */
const DISK_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;
const THROWAWAY = { oneshot: 'oneshot', rescue: 'rescue' } as const;

/**
 * Client names reach iPXE scripts (`echo`, `menu`) and the UI. iPXE expands `${..}` everywhere and
 * treats `;`, `||`, `&&`, a leading `#` and a trailing `\` as syntax (boot/ipxe-script.ts), so
 * those characters, `{}`, `<>`, backquotes and control characters (newlines) are refused here;
 * the script builder escapes again as defence in depth (names stored before this rule).
 */
const CLIENT_NAME_FORBIDDEN = /[\x00-\x1f\x7f$;|&#\\{}<>`]/;

/**
 * Generated CHAP secrets: 12 random bytes as base64url with `_` turned into `.`: 16 characters
 * from letters, digits, `-` and `.` (nothing iPXE, a shell or the iBFT treats specially).
 * 96 bits, the minimum RFC 7143 section 12.1.3 asks of a random CHAP secret, in 16 characters,
 * the most the Microsoft iSCSI initiator accepts (12-16), so Windows iBFT boots work too.
 */
export function generateChapSecret(): string {
  return randomBytes(12).toString('base64url').replace(/_/g, '.');
}

/** Parses a MAC from user input or throws 400 BAD_MAC. */
export function macOrThrow(input: string): string {
  const mac = normaliseMac(input);
  if (!mac) throw badRequest('BAD_MAC', `"${input}" is not a MAC address`);
  return mac;
}

const hex = (mac: string) => mac.replace(/:/g, '');

/**
 * The clients: who they are (MAC), their named copy-on-write disks (one boots by default), a
 * one-shot next-boot choice, scheduled snapshots, and who may reach their disks over iSCSI.
 * Rows live in the appliance database, disks in the image store. A disk is created before its
 * row and deleted after it, so a crash leaves at worst an unreferenced disk (which the next
 * create of the same name replaces), never a row without a disk.
 */
export class ClientRegistry implements ClientDirectory {
  private cache = new Map<string, ClientRecord>();

  constructor(
    private readonly db: Database.Database,
    private readonly store: DiskStore,
    private readonly opts: {
      iqnPrefix: string;
      clock: Clock;
      /**
       * config boot.chapByDefault: new clients (added, enrolled, copied or moved) get generated
       * one-way CHAP credentials unless the caller passes `chap` (null = none). Default true.
       */
      chapByDefault?: boolean;
      /**
       * The import in progress under an image name, if any (ImportJobs.get): a verb naming an
       * image that is still importing answers 409 IMAGE_NOT_READY with its progress, not 404.
       */
      importing?: (image: string) => { state: string; progress: number; doneBytes: number; totalBytes: number } | undefined;
    },
  ) {
    db.exec(`CREATE TABLE IF NOT EXISTS clients (
        mac TEXT PRIMARY KEY, name TEXT NOT NULL, lun INTEGER NOT NULL DEFAULT 0,
        initiators TEXT NOT NULL DEFAULT '[]', chap TEXT, ip TEXT UNIQUE, created_at INTEGER NOT NULL,
        boot_disk TEXT NOT NULL DEFAULT 'default', next_boot TEXT, schedule TEXT);
      CREATE TABLE IF NOT EXISTS client_disks (
        mac TEXT NOT NULL REFERENCES clients(mac) ON DELETE CASCADE, name TEXT NOT NULL, image TEXT NOT NULL,
        throwaway INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, PRIMARY KEY (mac, name));`);
    // Issue #15: the boot road per client; databases from before it get the column with its default.
    const cols = db.prepare('PRAGMA table_info(clients)').all() as { name: string }[];
    if (!cols.some((c) => c.name === 'road')) db.exec("ALTER TABLE clients ADD COLUMN road TEXT NOT NULL DEFAULT 'auto'");
    for (const r of db.prepare('SELECT * FROM clients').all() as Row[]) this.cache.set(r.mac, this.fromRow(r));
  }

  // ---- names ------------------------------------------------------------------------------

  /** The store name of a client's named disk: `client-<mac>` for 'default', else `client-<mac>.<name>`. */
  storeDiskName(mac: string, name: string): string {
    return name === 'default' ? `client-${hex(mac)}` : `client-${hex(mac)}.${name}`;
  }

  /** The target serving one named disk: `<prefix>:client-<mac>` for 'default', else `...client-<mac>.<name>`. */
  targetName(mac: string, disk = 'default'): string {
    return `${this.opts.iqnPrefix}:${this.storeDiskName(mac, disk)}`;
  }

  /** `<prefix>:initiator-<mac>`: the name iPXE is told to use (and passes on in the iBFT). */
  initiatorName(mac: string): string {
    return `${this.opts.iqnPrefix}:initiator-${hex(mac)}`;
  }

  /** The client and named disk a target name stands for. */
  parseTarget(target: string): { client: ClientRecord; disk: string } | undefined {
    const prefix = this.opts.iqnPrefix + ':client-';
    if (!target.startsWith(prefix)) return undefined;
    const m = /^([0-9a-f]{12})(?:\.([a-z0-9-]+))?$/.exec(target.slice(prefix.length));
    if (!m) return undefined;
    const client = this.cache.get(m[1].match(/../g)!.join(':'));
    const disk = m[2] ?? 'default';
    if (!client || !this.diskRow(client.mac, disk)) return undefined;
    return { client, disk };
  }

  private diskRow(mac: string, name: string): DiskRow | undefined {
    return this.db.prepare('SELECT * FROM client_disks WHERE mac = ? AND name = ?').get(mac, name) as DiskRow | undefined;
  }

  private fromRow(r: Row): ClientRecord {
    const boot = this.diskRow(r.mac, r.boot_disk);
    return {
      mac: r.mac,
      name: r.name,
      image: boot?.image ?? '',
      disk: this.storeDiskName(r.mac, r.boot_disk),
      target: this.targetName(r.mac, r.boot_disk),
      lun: r.lun,
      initiatorName: this.initiatorName(r.mac),
      initiators: JSON.parse(r.initiators) as string[],
      chap: r.chap ? (JSON.parse(r.chap) as ChapCredentials) : null,
      ip: r.ip,
      createdAt: r.created_at,
      bootDisk: r.boot_disk,
      nextBoot: r.next_boot ? (JSON.parse(r.next_boot) as NextBoot) : null,
      schedule: r.schedule ? (JSON.parse(r.schedule) as SnapshotSchedule) : null,
      road: (r.road ?? 'auto') as BootRoadSetting,
    };
  }

  private reload(mac: string): ClientRecord {
    const row = this.db.prepare('SELECT * FROM clients WHERE mac = ?').get(mac) as Row;
    const c = this.fromRow(row);
    this.cache.set(mac, c);
    return c;
  }

  // ---- clients ----------------------------------------------------------------------------

  list(): ClientRecord[] {
    return [...this.cache.values()].sort((a, b) => a.name.localeCompare(b.name) || a.mac.localeCompare(b.mac));
  }

  byMac(mac: string): ClientRecord | undefined {
    return this.cache.get(normaliseMac(mac) ?? mac);
  }

  /** The client or 404 CLIENT_NOT_FOUND. */
  get(macInput: string): ClientRecord {
    const mac = macOrThrow(macInput);
    const c = this.cache.get(mac);
    if (!c) throw notFound('CLIENT_NOT_FOUND', `no client with MAC ${mac}`);
    return c;
  }

  /** The client whose target this is (any of its disks), if any. */
  byTarget(target: string): ClientRecord | undefined {
    return this.parseTarget(target)?.client;
  }

  private validate(input: ClientInput): void {
    if (input.name !== undefined) {
      const name = input.name.trim();
      if (name.length > 64) throw badRequest('BAD_NAME', 'client names are at most 64 characters');
      if (CLIENT_NAME_FORBIDDEN.test(name)) {
        throw badRequest('BAD_NAME', 'client names may not contain control characters or any of $ ; | & # \\ { } < > ` (they reach iPXE scripts)');
      }
    }
    for (const i of input.initiators ?? []) {
      if (!IQN.test(i)) throw badRequest('BAD_INITIATOR', `"${i}" is not an iSCSI name (iqn.YYYY-MM.domain[:id], eui. or naa.)`);
    }
    const chap = input.chap;
    if (chap) {
      // RFC 7143 §12.1.3 wants secrets of at least 96 bits.
      if (chap.secret.length < 12 || chap.secret.length > 255) throw badRequest('BAD_CHAP', 'CHAP secret must be 12 to 255 characters');
      if (!chap.user) throw badRequest('BAD_CHAP', 'CHAP user must not be empty');
      if ((chap.targetUser === undefined) !== (chap.targetSecret === undefined))
        throw badRequest('BAD_CHAP', 'mutual CHAP needs both targetUser and targetSecret');
      if (chap.targetSecret !== undefined && (chap.targetSecret.length < 12 || chap.targetSecret === chap.secret)) {
        throw badRequest('BAD_CHAP', 'mutual CHAP target secret must be 12+ characters and differ from the initiator secret');
      }
    }
    if (input.ip) {
      const owner = (this.db.prepare('SELECT mac FROM clients WHERE ip = ?').get(input.ip) as { mac: string } | undefined)?.mac;
      if (owner) throw conflict('IP_IN_USE', `${input.ip} is already reserved for ${owner}`);
    }
  }

  /**
   * Throws unless `image` is a ready golden image: 409 IMAGE_NOT_READY (details: progress 0..1,
   * doneBytes, totalBytes) while it is still importing (issue #14: it used to be 404, which sent
   * the UI and scripts looking for a typo), else 404 IMAGE_NOT_FOUND.
   */
  requireImage(image: string): void {
    if (this.store.getImage(image)) return;
    const job = this.opts.importing?.(image);
    if (job?.state === 'importing') {
      const { progress, doneBytes, totalBytes } = job;
      throw new ApiError('IMAGE_NOT_READY', 409, `image "${image}" is still importing (${Math.floor(progress * 100)}%): try again when the import is done`, {
        progress,
        doneBytes,
        totalBytes,
      });
    }
    throw notFound('IMAGE_NOT_FOUND', `no golden image "${image}"`);
  }

  /** Makes a fresh store disk, replacing one left behind by a crash. */
  private freshDisk(storeName: string, make: () => unknown): void {
    if (this.store.getDisk(storeName)) this.store.deleteDisk(storeName);
    make();
  }

  /**
   * The credentials a new client gets when the caller names none: generated one-way CHAP (user =
   * its initiator name, which iPXE also writes into the iBFT) when boot.chapByDefault is on,
   * else none. Mutual CHAP is never generated: it needs the target's secret set on the client side too.
   */
  private defaultChap(mac: string): ChapCredentials | null {
    return this.opts.chapByDefault === false ? null : { user: this.initiatorName(mac), secret: generateChapSecret() };
  }

  /**
   * Adds a client whose 'default' disk is a new copy-on-write clone of `image`. Without
   * `input.chap` it gets generated CHAP credentials (boot.chapByDefault); `chap: null` means none.
   */
  create(macInput: string, image: string, input: ClientInput = {}): ClientRecord {
    const mac = macOrThrow(macInput);
    if (this.cache.has(mac)) throw conflict('CLIENT_EXISTS', `client ${mac} already exists`);
    this.requireImage(image);
    this.validate(input);
    if (input.chap === undefined) input = { ...input, chap: this.defaultChap(mac) };
    const disk = this.storeDiskName(mac, 'default');
    this.freshDisk(disk, () => this.store.createDisk(disk, image));
    try {
      this.insertClient(mac, image, input);
    } catch (err) {
      this.store.deleteDisk(disk);
      throw err;
    }
    return this.reload(mac);
  }

  private insertClient(mac: string, image: string, input: ClientInput): void {
    const now = this.opts.clock.now();
    this.db.transaction(() => {
      this.db
        .prepare('INSERT INTO clients (mac, name, initiators, chap, ip, created_at, road) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(
          mac,
          input.name?.trim() || mac,
          JSON.stringify(input.initiators ?? []),
          input.chap ? JSON.stringify(input.chap) : null,
          input.ip ?? null,
          now,
          input.road ?? 'auto',
        );
      this.db.prepare("INSERT INTO client_disks (mac, name, image, created_at) VALUES (?, 'default', ?, ?)").run(mac, image, now);
    })();
  }

  /** Changes name, extra initiators, CHAP or IP reservation. */
  update(macInput: string, input: ClientInput): ClientRecord {
    const c = this.get(macInput);
    this.validate({ ...input, ip: input.ip && input.ip !== c.ip ? input.ip : undefined });
    this.db
      .prepare('UPDATE clients SET name = ?, initiators = ?, chap = ?, ip = ?, road = ? WHERE mac = ?')
      .run(
        input.name?.trim() || c.name,
        JSON.stringify(input.initiators ?? c.initiators),
        input.chap === undefined ? (c.chap ? JSON.stringify(c.chap) : null) : input.chap ? JSON.stringify(input.chap) : null,
        input.ip === undefined ? c.ip : input.ip,
        input.road ?? c.road ?? 'auto',
        c.mac,
      );
    return this.reload(c.mac);
  }

  /** Records that a named disk now descends from another image (reset / re-base). */
  setImage(mac: string, image: string, disk?: string): ClientRecord {
    const c = this.get(mac);
    this.db.prepare('UPDATE client_disks SET image = ? WHERE mac = ? AND name = ?').run(image, c.mac, disk ?? c.bootDisk);
    return this.reload(c.mac);
  }

  private refuseInUse(c: ClientRecord, storeDisk: string, what: string): void {
    if (this.store.isOpen(storeDisk))
      throw new ApiError('DISK_IN_USE', 409, `cannot ${what}: disk ${storeDisk} of ${c.mac} is in use by an iSCSI session; shut the client down first`);
  }

  /** Deletes the client and all its disks; refused while an initiator holds any of them. */
  delete(macInput: string): void {
    const c = this.get(macInput);
    const disks = this.disks(c.mac);
    for (const d of disks) this.refuseInUse(c, d.disk, 'delete the client');
    this.db.prepare('DELETE FROM clients WHERE mac = ?').run(c.mac);
    this.cache.delete(c.mac);
    for (const d of disks) if (this.store.getDisk(d.disk)) this.store.deleteDisk(d.disk);
  }

  // ---- named disks ------------------------------------------------------------------------

  /** The client's disks, boot disk first. */
  disks(macInput: string): ClientDisk[] {
    const c = this.get(macInput);
    const rows = this.db.prepare('SELECT * FROM client_disks WHERE mac = ? ORDER BY created_at, name').all(c.mac) as DiskRow[];
    return rows
      .map((r) => ({
        name: r.name,
        disk: this.storeDiskName(c.mac, r.name),
        target: this.targetName(c.mac, r.name),
        image: r.image,
        throwaway: r.throwaway === 1,
        createdAt: r.created_at,
      }))
      .sort((a, b) => Number(b.name === c.bootDisk) - Number(a.name === c.bootDisk));
  }

  /** One named disk or 404 DISK_NOT_FOUND. */
  disk(macInput: string, name: string): ClientDisk {
    const d = this.disks(macInput).find((x) => x.name === name);
    if (!d) throw notFound('DISK_NOT_FOUND', `client ${this.get(macInput).mac} has no disk "${name}"`);
    return d;
  }

  private checkDiskName(name: string): void {
    if (!DISK_NAME.test(name)) throw badRequest('BAD_DISK_NAME', 'disk names are 1-32 lower-case letters, digits or "-"');
    if (name === THROWAWAY.oneshot || name === THROWAWAY.rescue) throw badRequest('BAD_DISK_NAME', `"${name}" is reserved for throw-away boot disks`);
  }

  /** Adds a named disk: a new clone of `image`, or an O(1) copy of another disk (or one of its snapshots). */
  async addDisk(macInput: string, name: string, from: { image: string } | { copyOf: string; snapshot?: number }): Promise<ClientDisk> {
    const c = this.get(macInput);
    this.checkDiskName(name);
    if (this.diskRow(c.mac, name)) throw conflict('DISK_EXISTS', `client ${c.mac} already has a disk "${name}"`);
    const storeName = this.storeDiskName(c.mac, name);
    let image: string;
    if ('image' in from) {
      this.requireImage(from.image);
      image = from.image;
      this.freshDisk(storeName, () => this.store.createDisk(storeName, from.image));
    } else {
      const src = this.disk(c.mac, from.copyOf);
      image = src.image;
      if (this.store.getDisk(storeName)) this.store.deleteDisk(storeName);
      await this.copyStoreDisk(src.disk, storeName, from.snapshot);
    }
    this.db.prepare('INSERT INTO client_disks (mac, name, image, created_at) VALUES (?, ?, ?, ?)').run(c.mac, name, image, this.opts.clock.now());
    return this.disk(c.mac, name);
  }

  private async copyStoreDisk(from: string, to: string, snapshot?: number): Promise<void> {
    await this.store.copyDisk(from, to, { snapshot });
  }

  /** Deletes a named disk (never the boot disk; never one in use). */
  removeDisk(macInput: string, name: string): void {
    const c = this.get(macInput);
    const d = this.disk(c.mac, name);
    if (name === c.bootDisk) throw conflict('DISK_IS_BOOT_DISK', `"${name}" is the boot disk of ${c.mac}: choose another boot disk first`);
    if (c.nextBoot?.kind === 'disk' && c.nextBoot.disk === name) throw conflict('DISK_IS_NEXT_BOOT', `"${name}" is the next boot of ${c.mac}`);
    this.refuseInUse(c, d.disk, 'delete the disk');
    this.db.prepare('DELETE FROM client_disks WHERE mac = ? AND name = ?').run(c.mac, name);
    if (this.store.getDisk(d.disk)) this.store.deleteDisk(d.disk);
  }

  /** Chooses which named disk boots by default. */
  setBootDisk(macInput: string, name: string): ClientRecord {
    const c = this.get(macInput);
    const d = this.disk(c.mac, name);
    if (d.throwaway) throw badRequest('BAD_DISK_NAME', 'a throw-away disk cannot be the boot disk');
    this.db.prepare('UPDATE clients SET boot_disk = ? WHERE mac = ?').run(name, c.mac);
    return this.reload(c.mac);
  }

  // ---- next boot, schedule ----------------------------------------------------------------

  /** Sets (or clears, with null) the one-shot choice for the next boot. */
  setNextBoot(macInput: string, next: NextBoot | null): ClientRecord {
    const c = this.get(macInput);
    if (next?.kind === 'image' || next?.kind === 'rescue') this.requireImage(next.image);
    if (next?.kind === 'disk') {
      const d = this.disk(c.mac, next.disk);
      if (d.throwaway) throw badRequest('BAD_DISK_NAME', 'a throw-away disk cannot be chosen for the next boot');
    }
    this.db.prepare('UPDATE clients SET next_boot = ? WHERE mac = ?').run(next ? JSON.stringify(next) : null, c.mac);
    return this.reload(c.mac);
  }

  /** Sets (or clears) scheduled snapshots. */
  setSchedule(macInput: string, schedule: SnapshotSchedule | null): ClientRecord {
    const c = this.get(macInput);
    if (schedule && (schedule.everyMinutes < 1 || schedule.keep < 1)) throw badRequest('BAD_SCHEDULE', 'everyMinutes and keep must be at least 1');
    this.db.prepare('UPDATE clients SET schedule = ? WHERE mac = ?').run(schedule ? JSON.stringify(schedule) : null, c.mac);
    return this.reload(c.mac);
  }

  /**
   * A boot starts (iPXE fetched the client's script): consumes the one-shot next-boot choice
   * and answers which disk this boot uses. A throw-away disk is made afresh for each such boot.
   * The choice is made once per boot, here: the iBFT then carries that target to the OS, so the
   * initramfs re-login reaches the same disk.
   */
  async beginBoot(macInput: string): Promise<BootSelection> {
    const c = this.get(macInput);
    const next = c.nextBoot;
    if (!next) return { client: c, reason: 'default' };
    this.db.prepare('UPDATE clients SET next_boot = NULL WHERE mac = ?').run(c.mac);
    const base = this.reload(c.mac);
    if (next.kind === 'disk') {
      if (!this.diskRow(c.mac, next.disk)) return { client: base, reason: 'default' };
      return { client: this.asBooting(base, next.disk), reason: 'next-boot' };
    }
    const name = next.kind === 'rescue' ? THROWAWAY.rescue : THROWAWAY.oneshot;
    const storeName = this.storeDiskName(c.mac, name);
    this.refuseInUse(c, storeName, 'replace the throw-away disk');
    this.db.prepare('DELETE FROM client_disks WHERE mac = ? AND name = ?').run(c.mac, name);
    this.freshDisk(storeName, () => this.store.createDisk(storeName, next.image));
    this.db
      .prepare('INSERT INTO client_disks (mac, name, image, throwaway, created_at) VALUES (?, ?, ?, 1, ?)')
      .run(c.mac, name, next.image, this.opts.clock.now());
    return { client: this.asBooting(base, name), reason: next.kind === 'rescue' ? 'rescue' : 'next-boot' };
  }

  private asBooting(c: ClientRecord, disk: string): ClientRecord {
    const row = this.diskRow(c.mac, disk)!;
    return { ...c, disk: this.storeDiskName(c.mac, disk), target: this.targetName(c.mac, disk), image: row.image };
  }

  // ---- moving disks -----------------------------------------------------------------------

  /**
   * Gives a client's boot disk (its current state or a snapshot) to another MAC, as that
   * client's 'default' disk: `copy` keeps the original, otherwise the old client loses it (and
   * with it any access: its targets are gone). The new MAC must not be a client yet. O(1).
   */
  async moveDisk(fromMac: string, toMacInput: string, opts: { copy: boolean; snapshot?: number; name?: string }): Promise<ClientRecord> {
    const from = this.get(fromMac);
    const to = macOrThrow(toMacInput);
    if (to === from.mac) throw badRequest('SAME_CLIENT', 'source and destination MAC are the same');
    if (this.cache.has(to)) throw conflict('CLIENT_EXISTS', `client ${to} already exists: delete it first or choose a new MAC`);
    const src = this.disk(from.mac, from.bootDisk ?? 'default');
    if (!opts.copy) this.refuseInUse(from, src.disk, 'move the disk');
    const dest = this.storeDiskName(to, 'default');
    if (this.store.getDisk(dest)) this.store.deleteDisk(dest);
    if (opts.name !== undefined) this.validate({ name: opts.name });
    await this.copyStoreDisk(src.disk, dest, opts.snapshot);
    // The new MAC is another machine: it gets its own secret, never the old client's (which that
    // machine knows from its iBFT). A client without CHAP stays without unless the default is on.
    const chap = from.chap
      ? {
          ...from.chap,
          user: from.chap.user === from.initiatorName ? this.initiatorName(to) : from.chap.user,
          secret: generateChapSecret(),
          ...(from.chap.targetUser ? { targetSecret: generateChapSecret() } : {}),
        }
      : this.defaultChap(to);
    try {
      this.insertClient(to, src.image, { name: opts.name, initiators: from.initiators, chap });
    } catch (err) {
      this.store.deleteDisk(dest);
      throw err;
    }
    if (!opts.copy) this.delete(from.mac);
    return this.reload(to);
  }
}
