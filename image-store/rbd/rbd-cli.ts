import { execFile } from 'node:child_process';

/** How to reach the cluster: the same keys as `store.rbd` in the config. */
export interface RbdTarget {
  /** ceph.conf of the cluster (mon addresses, fsid). */
  conf: string;
  /** cephx user without the "client." prefix, e.g. "netboot". */
  id: string;
  /** Keyring holding that user's key (default: what ceph.conf names). */
  keyring?: string;
  pool: string;
}

/** A failed `rbd` command: its exit status and the first line of what it printed. */
export class RbdCliError extends Error {
  constructor(
    readonly args: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`rbd ${args.join(' ')}: ${stderr.split('\n').find((l) => l.trim() && !/^\d{4}-\d\d-\d\d/.test(l)) ?? stderr.trim() ?? `exit ${exitCode}`}`);
    this.name = 'RbdCliError';
  }

  /** The lines rbd itself printed (not librados' timestamped log lines). */
  get said(): string {
    return this.stderr
      .split('\n')
      .filter((l) => !/^\d{4}-\d\d-\d\dT/.test(l))
      .join('\n');
  }

  /** ENOENT: "(2) No such file or directory". */
  get notFound(): boolean {
    return /\(2\) No such file or directory/.test(this.said);
  }

  /** EEXIST: "(17) File exists". */
  get exists(): boolean {
    return /\(17\) File exists/.test(this.said);
  }
}

/**
 * Management of the pool through the `rbd` tool (ceph-common): create, clone, snapshot, protect,
 * remove. Each call is a process (~0.1 s, measured in bench/rbd-vs-tgt.ts); the hot path is the
 * addon (native.ts). Image and snapshot names are ours (store.ts makes them), never user input.
 */
export class RbdCli {
  constructor(
    private readonly t: RbdTarget,
    private readonly bin = 'rbd',
    private readonly timeoutMs = 120_000,
  ) {}

  private base(): string[] {
    return ['--conf', this.t.conf, '--id', this.t.id, ...(this.t.keyring ? ['--keyring', this.t.keyring] : []), '--pool', this.t.pool];
  }

  /** pool/image or pool/image@snap: commands with two specs (clone) ignore --pool for them. */
  private spec(image: string, snap?: string): string {
    return `${this.t.pool}/${image}${snap === undefined ? '' : `@${snap}`}`;
  }

  run(args: string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(this.bin, [...this.base(), ...args], { timeout: this.timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new RbdCliError(args, typeof err.code === 'number' ? err.code : null, String(stderr || err.message)));
        else resolve(String(stdout));
      });
    });
  }

  async create(image: string, sizeBytes: number): Promise<void> {
    await this.run(['create', '--size', `${sizeBytes}B`, this.spec(image)]);
  }

  async snapCreate(image: string, snap: string): Promise<void> {
    await this.run(['snap', 'create', this.spec(image, snap)]);
  }

  async snapProtect(image: string, snap: string): Promise<void> {
    await this.run(['snap', 'protect', this.spec(image, snap)]);
  }

  /** Unprotects (if protected) and removes a snapshot; one whose clones live on moves to the trash (clone v2). */
  async snapRemove(image: string, snap: string): Promise<void> {
    try {
      await this.run(['snap', 'unprotect', this.spec(image, snap)]);
    } catch (err) {
      // Not protected, or clones still depend on it (then rm moves it to the trash namespace).
      if (err instanceof RbdCliError && err.notFound) return;
    }
    try {
      await this.run(['snap', 'rm', this.spec(image, snap)]);
    } catch (err) {
      if (!(err instanceof RbdCliError && err.notFound)) throw err;
    }
  }

  /** A copy-on-write child of image@snap (O(1)). Clone format 2: the parent snapshot need not stay protected. */
  async clone(parent: string, snap: string, child: string): Promise<void> {
    await this.run(['clone', '--rbd-default-clone-format', '2', this.spec(parent, snap), this.spec(child)]);
  }

  /** Removes an image (absent is fine); its snapshots must be gone. */
  async remove(image: string): Promise<void> {
    try {
      await this.run(['rm', this.spec(image)]);
    } catch (err) {
      if (!(err instanceof RbdCliError && err.notFound)) throw err;
    }
  }

  /** Every image in the pool. */
  async list(): Promise<string[]> {
    return JSON.parse(await this.run(['ls', '--format', 'json'])) as string[];
  }

  /** The image's snapshots (user namespace). */
  async snapshots(image: string): Promise<{ id: number; name: string; size: number; protected: string }[]> {
    return JSON.parse(await this.run(['snap', 'ls', '--format', 'json', this.spec(image)])) as { id: number; name: string; size: number; protected: string }[];
  }

  /** Bytes the pool may still take and has stored (`rbd`'s view via `ceph df` needs mon caps we do not ask for). */
  async du(image?: string): Promise<{ provisioned: number; used: number }> {
    const o = JSON.parse(await this.run(['du', '--format', 'json', ...(image ? [this.spec(image)] : [])])) as {
      total_provisioned_size: number;
      total_used_size: number;
    };
    return { provisioned: o.total_provisioned_size, used: o.total_used_size };
  }
}
