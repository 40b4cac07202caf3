// After a timeout, find what is left of a filter that escaped its process
// group (setsid) and kill it. In setpriv mode only the process group is ours
// to kill; a process that moved to a session of its own is recognised by what
// it still holds: the filter's stdout/stderr socket or the spool file on its
// stdin. (In bwrap mode the pid namespace dies as a whole anyway.) A process
// that closed all of those and detached is out of reach without cgroups:
// docs/sandbox.md says so. childrenOf() serves the filter runner process,
// which kills its children's process groups when the milter is gone.
import fs from 'node:fs';

export interface Marks {
  uid: number;
  /** readlink targets of the child's descriptors 1 and 2, e.g. "socket:[1234]". */
  links: Set<string>;
  /** The spool file (device, inode), as the filter's stdin. */
  file: { dev: number; ino: number } | null;
}

function linkOf(p: string): string | null {
  try {
    return fs.readlinkSync(p);
  } catch {
    return null;
  }
}

/** Records what the filter's leader holds, right after the spawn. */
export function marksOf(pid: number, uid: number, file: { dev: number; ino: number } | null): Marks {
  const links = new Set<string>();
  for (const fd of [1, 2]) {
    const l = linkOf(`/proc/${pid}/fd/${fd}`);
    if (l !== null && l.startsWith('socket:') ) links.add(l);
    else if (l !== null && l.startsWith('pipe:')) links.add(l);
  }
  return { uid, links, file };
}

function holds(pid: string, marks: Marks): boolean {
  let fds: string[];
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  for (const fd of fds) {
    const p = `/proc/${pid}/fd/${fd}`;
    const l = linkOf(p);
    if (l === null) continue;
    if (marks.links.has(l)) return true;
    if (marks.file && l.startsWith('/')) {
      try {
        const st = fs.statSync(p);
        if (st.dev === marks.file.dev && st.ino === marks.file.ino) return true;
      } catch {
        // gone
      }
    }
  }
  return false;
}

/** The pids in /proc, as their directory names ([] without /proc). */
function procPids(): string[] {
  try {
    return fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
}

/** SIGKILLs every process of `marks.uid` that holds one of the marks; returns their pids. */
export function killSurvivors(marks: Marks): number[] {
  if (marks.links.size === 0 && marks.file === null) return [];
  const killed: number[] = [];
  for (const name of procPids()) {
    if (Number(name) === process.pid) continue;
    try {
      if (fs.statSync(`/proc/${name}`).uid !== marks.uid) continue;
    } catch {
      continue;
    }
    if (!holds(name, marks)) continue;
    try {
      process.kill(Number(name), 'SIGKILL');
      killed.push(Number(name));
    } catch {
      // already gone
    }
  }
  return killed;
}

/** The pids whose parent is `ppid` (Linux /proc; [] elsewhere). */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of procPids()) {
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses.
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}
