import { createServer, type Server } from 'node:net';
import { FatalError } from '../core/service';

/**
 * One appliance process per network namespace serves DHCP on a port. Checking that the port is
 * free and then binding it with SO_REUSEADDR (which our two port-67 sockets need) leaves a window
 * in which a second process started at the same moment passes the same check: both then serve and
 * every client gets two answers. So the process first takes a lock named after the port: a Unix
 * socket in the abstract namespace (Linux), which is as wide as the network namespace port 67
 * lives in, taken atomically, and dropped by the kernel when the process dies.
 */
export async function lockDhcpPort(port: number): Promise<() => void> {
  if (process.platform !== 'linux') return () => undefined;
  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE'
          ? new FatalError(`DHCP port ${port} is already served by another appliance process on this host (it holds the DHCP lock): stop it first`)
          : err,
      );
    });
    server.listen({ path: `\0netboot-appliance-dhcp-${port}` }, () => resolve());
  });
  server.unref();
  return () => server.close();
}
