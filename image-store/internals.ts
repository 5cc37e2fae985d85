import type Database from 'better-sqlite3';
import type { GcResult, Metadata } from './metadata';
import type { SegmentSpace } from './segments';
import type { StoreHealth } from './types';

/**
 * The parts of the local store that its check (check.ts) and its import (import.ts) work on. The
 * store hands itself over as this, so those two need not import store.ts (no import cycle).
 */
export interface StoreInternals {
  readonly dir: string;
  readonly meta: Metadata;
  readonly space: SegmentSpace;
  readonly db: Database.Database;
  health(): StoreHealth;
  hasFailedVolumes(): boolean;
  hasOpenVolumes(): boolean;
  clearDegraded(): boolean;
  /** Runs fn in one transaction, then frees what it collected. */
  commit(fn: () => GcResult | void): void;
}
