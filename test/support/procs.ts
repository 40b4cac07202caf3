// Tests that look for processes left behind: /proc readers.
import fs from 'node:fs';

/** The pids whose parent is `ppid` (Linux /proc). */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
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

/** Whether `pid` is the native launcher (serve's other child, beside the runner process). */
export function isLauncher(pid: number): boolean {
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`).endsWith('/per-user-milter-launcher');
  } catch {
    return false;
  }
}
