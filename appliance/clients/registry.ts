import type Database from 'better-sqlite3';
import type { Clock } from '../core/clock';
import { ApiError, badRequest, conflict, notFound } from '../core/errors';
import { normaliseMac, type ChapCredentials, type ClientDirectory, type ClientRecord } from '../core/model';
import type { DiskStore } from './disk-store';

/** What a caller may set when adding or changing a client. */
export interface ClientInput {
  name?: string;
  initiators?: string[];
  chap?: ChapCredentials | null;
  ip?: string | null;
}

interface Row {
  mac: string;
  name: string;
  image: string;
  disk: string;
  lun: number;
  initiators: string;
  chap: string | null;
  ip: string | null;
  created_at: number;
}

const IQN = /^(iqn\.\d{4}-\d{2}\.[^\s]+|eui\.[0-9a-fA-F]{16}|naa\.[0-9a-fA-F]{16,32})$/;

/** Parses a MAC from user input or throws 400 BAD_MAC. */
export function macOrThrow(input: string): string {
  const mac = normaliseMac(input);
  if (!mac) throw badRequest('BAD_MAC', `"${input}" is not a MAC address`);
  return mac;
}

/**
 * The clients: who they are (MAC), which golden image their own copy-on-write disk came from,
 * and who may reach that disk over iSCSI. Rows live in the appliance database; disks in the
 * image store. A disk is created before its row and deleted after it, so a crash leaves at
 * worst an unreferenced disk (reported by the store's check), never a client without a disk.
 */
export class ClientRegistry implements ClientDirectory {
  private cache = new Map<string, ClientRecord>();

  constructor(
    private readonly db: Database.Database,
    private readonly store: DiskStore,
    private readonly opts: { iqnPrefix: string; clock: Clock },
  ) {
    db.exec(`CREATE TABLE IF NOT EXISTS clients (
      mac TEXT PRIMARY KEY, name TEXT NOT NULL, image TEXT NOT NULL, disk TEXT NOT NULL UNIQUE,
      lun INTEGER NOT NULL DEFAULT 0, initiators TEXT NOT NULL DEFAULT '[]', chap TEXT, ip TEXT UNIQUE,
      created_at INTEGER NOT NULL)`);
    for (const r of db.prepare('SELECT * FROM clients').all() as Row[]) this.cache.set(r.mac, this.fromRow(r));
  }

  /** `iqn...:client-525400123456`: the target serving this client's disk. */
  targetName(mac: string): string {
    return `${this.opts.iqnPrefix}:client-${mac.replace(/:/g, '')}`;
  }

  /** `iqn...:initiator-525400123456`: the name iPXE is told to use (and passes on in the iBFT). */
  initiatorName(mac: string): string {
    return `${this.opts.iqnPrefix}:initiator-${mac.replace(/:/g, '')}`;
  }

  private fromRow(r: Row): ClientRecord {
    return {
      mac: r.mac,
      name: r.name,
      image: r.image,
      disk: r.disk,
      target: this.targetName(r.mac),
      lun: r.lun,
      initiatorName: this.initiatorName(r.mac),
      initiators: JSON.parse(r.initiators) as string[],
      chap: r.chap ? (JSON.parse(r.chap) as ChapCredentials) : null,
      ip: r.ip,
      createdAt: r.created_at,
    };
  }

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

  /** The client whose target this is (iSCSI login), if any. */
  byTarget(target: string): ClientRecord | undefined {
    const m = /:client-([0-9a-f]{12})$/.exec(target);
    if (!m || !target.startsWith(this.opts.iqnPrefix + ':')) return undefined;
    return this.cache.get(m[1].match(/../g)!.join(':'));
  }

  private validate(input: ClientInput): void {
    for (const i of input.initiators ?? []) {
      if (!IQN.test(i)) throw badRequest('BAD_INITIATOR', `"${i}" is not an iSCSI name (iqn.YYYY-MM.domain[:id], eui. or naa.)`);
    }
    const chap = input.chap;
    if (chap) {
      // RFC 7143 §12.1.3: secrets of at least 96 bits; iPXE and open-iscsi limit them to 16 bytes+.
      if (chap.secret.length < 12 || chap.secret.length > 255) throw badRequest('BAD_CHAP', 'CHAP secret must be 12 to 255 characters');
      if (!chap.user) throw badRequest('BAD_CHAP', 'CHAP user must not be empty');
      if ((chap.targetUser === undefined) !== (chap.targetSecret === undefined)) throw badRequest('BAD_CHAP', 'mutual CHAP needs both targetUser and targetSecret');
      if (chap.targetSecret !== undefined && (chap.targetSecret.length < 12 || chap.targetSecret === chap.secret)) {
        throw badRequest('BAD_CHAP', 'mutual CHAP target secret must be 12+ characters and differ from the initiator secret');
      }
    }
    if (input.ip) {
      const owner = (this.db.prepare('SELECT mac FROM clients WHERE ip = ?').get(input.ip) as { mac: string } | undefined)?.mac;
      if (owner) throw conflict('IP_IN_USE', `${input.ip} is already reserved for ${owner}`);
    }
  }

  /** Adds a client with a new copy-on-write disk of `image`. */
  create(macInput: string, image: string, input: ClientInput = {}): ClientRecord {
    const mac = macOrThrow(macInput);
    if (this.cache.has(mac)) throw conflict('CLIENT_EXISTS', `client ${mac} already exists`);
    if (!this.store.getImage(image)) throw notFound('IMAGE_NOT_FOUND', `no golden image "${image}"`);
    this.validate(input);
    const disk = `client-${mac.replace(/:/g, '')}`;
    if (this.store.getDisk(disk)) this.store.deleteDisk(disk); // left by a crash between the two steps below
    this.store.createDisk(disk, image);
    try {
      this.db
        .prepare('INSERT INTO clients (mac, name, image, disk, lun, initiators, chap, ip, created_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)')
        .run(mac, input.name?.trim() || mac, image, disk, JSON.stringify(input.initiators ?? []), input.chap ? JSON.stringify(input.chap) : null, input.ip ?? null, this.opts.clock.now());
    } catch (err) {
      this.store.deleteDisk(disk);
      throw err;
    }
    return this.reload(mac);
  }

  /** Changes name, extra initiators, CHAP or IP reservation. */
  update(macInput: string, input: ClientInput): ClientRecord {
    const c = this.get(macInput);
    this.validate({ ...input, ip: input.ip && input.ip !== c.ip ? input.ip : undefined });
    this.db
      .prepare('UPDATE clients SET name = ?, initiators = ?, chap = ?, ip = ? WHERE mac = ?')
      .run(
        input.name?.trim() || c.name,
        JSON.stringify(input.initiators ?? c.initiators),
        input.chap === undefined ? (c.chap ? JSON.stringify(c.chap) : null) : input.chap ? JSON.stringify(input.chap) : null,
        input.ip === undefined ? c.ip : input.ip,
        c.mac,
      );
    return this.reload(c.mac);
  }

  /** Records that the client's disk now descends from another image (reset/re-base). */
  setImage(mac: string, image: string): ClientRecord {
    this.db.prepare('UPDATE clients SET image = ? WHERE mac = ?').run(image, mac);
    return this.reload(mac);
  }

  /** Deletes the client and its disk; refused while an initiator holds the disk. */
  delete(macInput: string): void {
    const c = this.get(macInput);
    if (this.store.isOpen(c.disk)) throw new ApiError('DISK_IN_USE', 409, `the disk of ${c.mac} is in use by an iSCSI session; shut the client down first`);
    this.db.prepare('DELETE FROM clients WHERE mac = ?').run(c.mac);
    this.cache.delete(c.mac);
    this.store.deleteDisk(c.disk);
  }

  private reload(mac: string): ClientRecord {
    const row = this.db.prepare('SELECT * FROM clients WHERE mac = ?').get(mac) as Row;
    const c = this.fromRow(row);
    this.cache.set(mac, c);
    return c;
  }
}

/** RFC 4173 root path: `iscsi:<server>:<protocol>:<port>:<LUN>:<target>` (port and LUN empty when default). */
export function rootPath(c: ClientRecord, server: string, port: number): string {
  return `iscsi:${server}::${port === 3260 ? '' : port}:${c.lun === 0 ? '' : c.lun.toString(16)}:${c.target}`;
}
