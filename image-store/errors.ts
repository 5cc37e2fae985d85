/** Stable codes for store failures; the HTTP layer maps each to a status (appliance/http/errors.ts). */
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

/** An error from a store management call, with a stable code for programs. */
export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}
