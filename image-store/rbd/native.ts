import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** The addon's surface (addon/rbd_io.c): opaque handles and callback-style I/O. */
interface RbdIoAddon {
  connect(conf: string, id: string, keyring: string, pool: string): object;
  shutdown(cluster: object): void;
  openImage(cluster: object, name: string, snapshot: string | null, readOnly: boolean): object;
  size(image: object): number;
  read(image: object, offset: number, buf: Buffer, cb: (err: Error | null) => void): void;
  write(image: object, offset: number, buf: Buffer, fua: boolean, cb: (err: Error | null) => void): void;
  flush(image: object, cb: (err: Error | null) => void): void;
  discard(image: object, offset: number, length: number, cb: (err: Error | null) => void): void;
  close(image: object, cb: (err: Error | null) => void): void;
  clientAddress(cluster: object): string;
  lockOwners(image: object): string[];
  breakLock(image: object, owner: string): void;
}

let addon: RbdIoAddon | undefined;

/**
 * Where the addon is: beside the bundle (dist/rbd_io.node, copied by appliance/build.mjs) or, in
 * development, in addon/build/Release (addon/build.sh; a dist/ bundle in a checkout finds it there too).
 */
export function addonPath(): string | undefined {
  const candidates = [
    path.join(__dirname, 'rbd_io.node'),
    path.join(__dirname, 'addon/build/Release/rbd_io.node'),
    path.join(__dirname, '../image-store/rbd/addon/build/Release/rbd_io.node'),
  ];
  return candidates.find((c) => fs.existsSync(c));
}

function load(): RbdIoAddon {
  if (addon) return addon;
  const p = addonPath();
  if (!p) throw new Error('the RBD backend needs its librbd addon (rbd_io.node): run image-store/rbd/addon/build.sh (needs librbd-dev)');
  addon = createRequire(__filename)(p) as RbdIoAddon;
  return addon;
}

/** An errno-carrying error from librbd (e.g. 2 ENOENT, 16 EBUSY, 28 ENOSPC, 108 ESHUTDOWN). */
export type RbdError = Error & { errno?: number };

/** One RADOS connection and I/O context on a pool; images are opened through it. */
export class RbdCluster {
  private handle: object | null;
  private readonly io: RbdIoAddon;

  constructor(opts: { conf: string; id: string; keyring?: string; pool: string }) {
    this.io = load();
    this.handle = this.io.connect(opts.conf, opts.id, opts.keyring ?? '', opts.pool);
  }

  /** Opens an image (or one of its snapshots, always read-only). */
  open(name: string, opts: { snapshot?: string; readOnly?: boolean } = {}): RbdImage {
    if (!this.handle) throw new Error('the RADOS connection is shut down');
    return new RbdImage(this.io, this.io.openImage(this.handle, name, opts.snapshot ?? null, opts.readOnly === true));
  }

  /** This connection's address(es) (`rados_getaddrs`), as librbd names an exclusive lock's owner. */
  get clientAddress(): string {
    if (!this.handle) throw new Error('the RADOS connection is shut down');
    return this.io.clientAddress(this.handle);
  }

  /** Closes the connection; every image must be closed first. */
  shutdown(): void {
    if (!this.handle) return;
    this.io.shutdown(this.handle);
    this.handle = null;
  }
}

/** An open RBD image: asynchronous byte-addressed I/O (librbd aio), completions on the JS thread. */
export class RbdImage {
  private closed = false;

  constructor(
    private readonly io: RbdIoAddon,
    private readonly handle: object,
  ) {}

  get sizeBytes(): number {
    return this.io.size(this.handle);
  }

  read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    return new Promise((resolve, reject) => this.io.read(this.handle, offset, buf, (err) => (err ? reject(err) : resolve(buf))));
  }

  /** `data` must not change until the promise settles (librbd reads it from the caller's memory). */
  write(offset: number, data: Buffer, fua = false): Promise<void> {
    return new Promise((resolve, reject) => this.io.write(this.handle, offset, data, fua, (err) => (err ? reject(err) : resolve())));
  }

  flush(): Promise<void> {
    return new Promise((resolve, reject) => this.io.flush(this.handle, (err) => (err ? reject(err) : resolve())));
  }

  discard(offset: number, length: number): Promise<void> {
    return new Promise((resolve, reject) => this.io.discard(this.handle, offset, length, (err) => (err ? reject(err) : resolve())));
  }

  /** The addresses of whoever holds the image's exclusive lock, empty when nobody does. */
  lockOwners(): string[] {
    return this.io.lockOwners(this.handle);
  }

  /** Takes the exclusive lock away from a dead owner; librbd blocklists it first, so it cannot write again. */
  breakLock(owner: string): void {
    this.io.breakLock(this.handle, owner);
  }

  /** Closes the image (asynchronously: it releases the lock and notifies watchers); the caller has waited for its requests. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve, reject) => this.io.close(this.handle, (err) => (err ? reject(err) : resolve())));
  }
}
