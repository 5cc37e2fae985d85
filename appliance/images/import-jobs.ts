import type { Clock } from '../core/clock';
import { badRequest, conflict } from '../core/errors';
import type { Logger } from '../core/log';
import type { DiskStore } from '../clients/disk-store';

/** An import in progress or finished with an error (successful ones become images). */
export interface ImportJob {
  name: string;
  state: 'importing' | 'failed';
  progress: number; // 0..1
  doneBytes: number;
  totalBytes: number;
  startedAt: number;
  error?: string;
}

export const IMAGE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;

/** Checks an image name (it becomes part of file names and URLs). */
export function checkImageName(name: string): void {
  if (!IMAGE_NAME.test(name)) throw badRequest('BAD_IMAGE_NAME', 'image names are 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit');
}

/**
 * Runs image imports in the background so the API answers at once (202) and the UI can show
 * progress. Failed imports stay listed (with the reason) until retried or dismissed; the store
 * guarantees a failed import leaves no image behind.
 */
export class ImportJobs {
  private readonly jobs = new Map<string, ImportJob>();
  private readonly aborts = new Map<string, AbortController>();

  constructor(
    private readonly store: DiskStore,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  list(): ImportJob[] {
    return [...this.jobs.values()];
  }

  get(name: string): ImportJob | undefined {
    return this.jobs.get(name);
  }

  /**
   * Starts importing `file` as image `name`; `cleanup` runs afterwards (e.g. deletes an upload or
   * closes the descriptor `file` reopens). `sourceName` is what the image records as its source;
   * `exclusive` says nobody else can write the file (see image-store/import.ts).
   */
  start(name: string, file: string, cleanup?: () => void, opts: { sourceName?: string; exclusive?: boolean } = {}): ImportJob {
    checkImageName(name);
    if (this.store.getImage(name)) throw conflict('IMAGE_EXISTS', `image "${name}" already exists`);
    if (this.jobs.get(name)?.state === 'importing') throw conflict('IMPORT_RUNNING', `image "${name}" is being imported`);
    const job: ImportJob = { name, state: 'importing', progress: 0, doneBytes: 0, totalBytes: 0, startedAt: this.clock.now() };
    this.jobs.set(name, job);
    const abort = new AbortController();
    this.aborts.set(name, abort);
    this.log.info({ image: name, file: opts.sourceName ?? file }, 'image import started');
    this.store
      .importImage(name, file, {
        ...opts,
        signal: abort.signal,
        onProgress: (done, total) => {
          job.doneBytes = done;
          job.totalBytes = total;
          job.progress = total > 0 ? done / total : 0;
        },
      })
      .then(
        (img) => {
          this.jobs.delete(name);
          this.log.info({ image: name, sizeBytes: img.sizeBytes, ms: this.clock.now() - job.startedAt }, 'image imported');
        },
        (err: Error) => {
          job.state = 'failed';
          job.error = err.message;
          this.log.warn({ image: name, err: err.message }, 'image import failed');
        },
      )
      .finally(() => {
        this.aborts.delete(name);
        cleanup?.();
      });
    return job;
  }

  /** Forgets a failed job (so the name can be reused) or cancels a running one. */
  dismiss(name: string): boolean {
    this.aborts.get(name)?.abort();
    return this.jobs.delete(name);
  }

  /** Cancels every running import (shutdown). */
  stopAll(): void {
    for (const a of this.aborts.values()) a.abort();
  }
}
