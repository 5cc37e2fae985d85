/**
 * File I/O (the image store's segment reads and writes) runs on libuv's thread pool. The pool
 * starts with the first asynchronous fs call and reads UV_THREADPOOL_SIZE then, so every entry
 * point imports this module before anything else. Two threads, not libuv's four: each request
 * handed to an idle thread costs a futex wake and a context switch, and with fewer threads a busy
 * one takes the next request from the queue without sleeping; with page-cache hits that hand-off
 * is most of a 4 KiB read's cost (docs/decisions.md, "Runtime and packaging", has the numbers).
 * The image store never lets fdatasync hold both threads (segments are synced one at a time).
 * An explicit UV_THREADPOOL_SIZE in the environment wins.
 */
export const DEFAULT_IO_THREADS = 2;

process.env.UV_THREADPOOL_SIZE ??= String(DEFAULT_IO_THREADS);
