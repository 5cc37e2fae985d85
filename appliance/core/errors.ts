/**
 * An error that crosses the API: a stable code for programs, an HTTP status, and a message for
 * people. The HTTP error handler turns it into {error: {code, message}} with that status.
 */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    readonly statusCode: number,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const notFound = (code: string, message: string) => new ApiError(code, 404, message);
export const conflict = (code: string, message: string) => new ApiError(code, 409, message);
export const badRequest = (code: string, message: string) => new ApiError(code, 400, message);
