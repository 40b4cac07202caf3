// Runs in: the milter process.
//
// Unix socket housekeeping. A socket file left by a crashed run blocks
// listen() with EADDRINUSE; we remove it only when nobody answers on it.
// A live socket means another milter is running there: that is an error,
// never something to delete. A path that is not a socket is never touched.
import { lstat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';

export class SocketInUseError extends Error {
  override readonly name = 'SocketInUseError';
}

function probe(path: string): Promise<'live' | 'stale'> {
  return new Promise((resolve, reject) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve('live');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT') resolve('stale');
      else reject(error);
    });
  });
}

/** Makes `path` free for listen(): removes a stale socket, refuses a live one or a non-socket. */
export async function prepareUnixSocketPath(path: string): Promise<void> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!stats.isSocket()) throw new SocketInUseError(`${path} exists and is not a socket; not removing it`);
  if ((await probe(path)) === 'live') throw new SocketInUseError(`${path}: another process is listening on this socket`);
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}

/** Removes our socket file at shutdown; a missing file is fine. */
export async function removeUnixSocket(path: string): Promise<void> {
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}
