/** Stable codes for store failures; the HTTP layer maps each to `status`. */
export type StoreErrorCode =
  | 'IMAGE_NOT_FOUND'
  | 'IMAGE_EXISTS'
  | 'IMAGE_IN_USE'
  | 'DISK_NOT_FOUND'
  | 'DISK_EXISTS'
  | 'DISK_IN_USE'
  | 'SNAPSHOT_NOT_FOUND'
  | 'SNAPSHOT_EXISTS'
  | 'BAD_NAME'
  | 'BAD_IMAGE'
  | 'IMAGE_REFERENCES_FILE'
  | 'NO_SPACE'
  | 'ABORTED'
  | 'NO_QEMU_IMG'
  | 'STORE_CLOSED';

const STATUS: Record<StoreErrorCode, number> = {
  IMAGE_NOT_FOUND: 404,
  DISK_NOT_FOUND: 404,
  SNAPSHOT_NOT_FOUND: 404,
  IMAGE_EXISTS: 409,
  DISK_EXISTS: 409,
  SNAPSHOT_EXISTS: 409,
  IMAGE_IN_USE: 409,
  DISK_IN_USE: 409,
  BAD_NAME: 400,
  BAD_IMAGE: 422,
  IMAGE_REFERENCES_FILE: 400, // an import naming another file (backing file, extent): refused, see import.ts
  NO_SPACE: 507,
  ABORTED: 499,
  NO_QEMU_IMG: 501,
  STORE_CLOSED: 503,
};

/** An error from an ImageStore management call, with a code for programs and an HTTP status. */
export class StoreError extends Error {
  readonly status: number;
  constructor(readonly code: StoreErrorCode, message: string) {
    super(message);
    this.name = 'StoreError';
    this.status = STATUS[code];
  }
}
