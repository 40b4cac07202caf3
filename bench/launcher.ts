// Runs in: the bench only.
//
// What a run through the native launcher costs, next to the floor: a plain
// fork+exec loop of the same trivial filter from a small C program
// (bench/baselines/fork-exec.c). CPU is the launcher's own plus that of the
// runs it reaped (/proc/PID/stat utime+stime+cutime+cstime), per run; the
// client side (Node) is not counted here (the full bench counts it).
//
//   node dist/bench/launcher.js [--runs N]      (as root; uses uid 61095)
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LauncherConnection } from '../src/launcher/client.js';
import { findBwrap, startLauncher, type LauncherSettings } from '../src/launcher/start.js';

const UID = 61095;
const HERE = fileURLToPath(new URL('../../bench/', import.meta.url));

function treeCpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  // utime stime cutime cstime are fields 14-17 (1-based); after "pid (comm)" they start at index 11.
  const ticks = (f[11] ?? 0) + (f[12] ?? 0) + (f[13] ?? 0) + (f[14] ?? 0);
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

async function viaLauncher(base: string, runs: number, over: Partial<LauncherSettings>, sandbox: 'setpriv' | 'bwrap', stat = false): Promise<{ cpu: number; wall: number }> {
  const spool = path.join(base, 'spool');
  const l = await startLauncher({
    socket: path.join(spool, 'l.sock'), spool, clientUid: 0, clientGid: 0, minUid: UID, maxUid: UID, filterPath: '~/.user-milter', rcptPath: '', defaultPath: '',
    cgroup: 'none', bwrap: findBwrap(), sandbox, passwdFile: path.join(base, 'passwd'), timeoutMs: 10_000, rcptTimeoutMs: 10_000,
    cpu: 20, as: 1 << 30, nproc: 64, fsize: 1 << 20, output: 65536, memory: 1 << 30, pids: 64, ...over,
  });
  const c = await LauncherConnection.connect(path.join(spool, 'l.sock'));
  const home = path.join(base, 'home');
  const req = { program: 'filter' as const, user: 'pumbench', uid: UID, spool: 'msg-000000000000000000000001', env: ['SENDER=s@example.org'] };
  await c.run(req); // warm-up
  const cpu0 = treeCpuMs(l.pid);
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) {
    if (stat) {
      // A STAT is a fork of the launcher: account lookup and path check in the child.
      const a = await c.stat(req);
      if (a.what !== 'own') throw new Error(`stat failed: ${JSON.stringify(a)}`);
      continue;
    }
    const a = await c.run(req);
    if (a.type !== 'done' || a.exitCode !== 0) throw new Error(`run failed: ${JSON.stringify(a)}`);
  }
  const wall = (performance.now() - t0) / runs;
  const cpu = (treeCpuMs(l.pid) - cpu0) / runs;
  c.close();
  await l.stop();
  return { cpu, wall };
}

async function main(): Promise<void> {
  const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 400);
  if (process.geteuid?.() !== 0) throw new Error('run as root');
  const base = fs.mkdtempSync('/var/lib/pumbench-launcher-');
  const cg = path.join('/sys/fs/cgroup/unified', `pumbench-${process.pid}`);
  try {
    fs.chmodSync(base, 0o755);
    const home = path.join(base, 'home');
    fs.mkdirSync(home, { mode: 0o700 });
    fs.chownSync(home, UID, UID);
    const filter = path.join(home, '.user-milter');
    fs.writeFileSync(filter, '#!/bin/sh\ncat >/dev/null; exit 0\n', { mode: 0o755 });
    fs.chownSync(filter, UID, UID);
    fs.mkdirSync(path.join(base, 'spool'), { mode: 0o700 });
    fs.writeFileSync(path.join(base, 'passwd'), `pumbench:x:${UID}:${UID}::${home}:/bin/sh\n`, { mode: 0o644 });
    const msg = path.join(base, 'spool', 'msg-000000000000000000000001');
    fs.writeFileSync(msg, 'Subject: bench\n\n' + crypto.randomBytes(3000).toString('base64') + '\n', { mode: 0o600 });
    const forkExec = path.join(base, 'fork-exec');
    execFileSync('cc', ['-O2', '-o', forkExec, path.join(HERE, 'baselines/fork-exec.c')]);
    const floor = execFileSync(forkExec, [String(runs), filter, msg, String(UID), String(UID)], { encoding: 'utf8' });
    const fm = /cpu_ms_per_run=([\d.]+) wall_ms_per_run=([\d.]+)/.exec(floor);
    const floorCpu = Number(fm?.[1]);
    const rows: Array<[string, { cpu: number; wall: number }]> = [['fork+exec loop (C)', { cpu: floorCpu, wall: Number(fm?.[2]) }]];
    rows.push(['launcher, setpriv, no cgroup', await viaLauncher(base, runs, {}, 'setpriv')]);
    rows.push(['launcher, STAT (a forked check)', await viaLauncher(base, runs, {}, 'setpriv', true)]);
    if (fs.existsSync('/sys/fs/cgroup/unified')) {
      fs.mkdirSync(cg);
      rows.push(['launcher, setpriv, cgroup per run', await viaLauncher(base, runs, { cgroup: cg }, 'setpriv')]);
    }
    if (findBwrap()) rows.push(['launcher, bwrap, no cgroup', await viaLauncher(base, Math.min(runs, 200), {}, 'bwrap')]);
    console.log(`${os.hostname()} ${new Date().toISOString()} ${runs} sequential runs, trivial filter, ~4 KB message, load ${os.loadavg()[0]?.toFixed(2)}`);
    console.log('| how | CPU ms per run | vs fork+exec | wall ms per run |');
    console.log('|---|---|---|---|');
    for (const [name, r] of rows) console.log(`| ${name} | ${r.cpu.toFixed(2)} | ${(r.cpu / floorCpu).toFixed(2)}x | ${r.wall.toFixed(2)} |`);
  } finally {
    if (fs.existsSync(cg)) fs.rmdirSync(cg);
    fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
