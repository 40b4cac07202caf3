// "No descriptors beyond 0/1/2" (docs/reference.md §4). Everything Node and libuv open
// is close-on-exec, but a descriptor the milter inherited from whoever
// started it (a shell, a supervisor, a test harness) is not, and would pass
// through every link of the launcher chain into the filter. Node cannot set
// FD_CLOEXEC, so such strays are closed once, before the first filter runs.
import fs from 'node:fs';

const O_CLOEXEC = 0o2000000;

/** Descriptors we must keep although they are not close-on-exec: systemd socket activation, Node's IPC channel. */
function keep(env: NodeJS.ProcessEnv = process.env): Set<number> {
  const k = new Set<number>([0, 1, 2]);
  const n = Number(env.LISTEN_FDS ?? '0');
  if (Number.isInteger(n) && n > 0 && Number(env.LISTEN_PID) === process.pid) for (let i = 0; i < n; i++) k.add(3 + i);
  const ch = Number(env.NODE_CHANNEL_FD ?? 'NaN');
  if (Number.isInteger(ch)) k.add(ch);
  return k;
}

/** Open descriptors above 2 without close-on-exec (Linux /proc; [] elsewhere). */
export function strayDescriptors(): number[] {
  const keepers = keep();
  const out: number[] = [];
  let names: string[];
  try {
    names = fs.readdirSync('/proc/self/fd');
  } catch {
    return out;
  }
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || keepers.has(fd)) continue;
    try {
      const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
      const flags = /^flags:\s+([0-7]+)/m.exec(info)?.[1];
      if (flags !== undefined && (parseInt(flags, 8) & O_CLOEXEC) === 0) out.push(fd);
    } catch {
      // gone meanwhile (the readdir handle itself)
    }
  }
  return out;
}

/** Closes the strays; returns what was closed. */
export function closeStrayDescriptors(): number[] {
  const fds = strayDescriptors();
  for (const fd of fds) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
  }
  return fds;
}
