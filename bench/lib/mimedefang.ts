// MIMEDefang as the benchmark peer (docs/testing-with-real-mtas.md §7): the C
// milter front end plus the Perl multiplexor, both as user defang, with a
// filter that does per-user-milter's job — every local recipient's
// ~/.user-milter run as that user (through sudo, the only way from the
// unprivileged worker to another uid) with the spooled message on stdin,
// and a 550 only when every such filter exited 1.
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Daemon, sleep, unixSocket, waitForSocket, type SocketSpec } from './daemons.js';
import type { BenchUser } from './users.js';

export const SUDOERS_FILE = '/etc/sudoers.d/pumbench-mimedefang';

/** The Perl filter; `@Recipients`, `action_bounce` and ./INPUTMSG come from mimedefang.pl. */
function filterText(): string {
  return `# per-user filters, MIMEDefang style (written by per-user-milter's bench)
use strict;
sub filter_begin { }
sub filter { }
sub filter_end {
    my ($entity) = @_;
    my ($asked, $rejects) = (0, 0);
    my %seen;
    foreach my $rcpt (@Recipients) {
        my $addr = $rcpt;
        $addr =~ s/^<//; $addr =~ s/>$//;
        my ($local, $domain) = split(/\\@/, $addr, 2);
        next unless defined $domain && lc($domain) eq 'example.test';
        # smtp-source numbers the 2nd.. recipients: 2pumbench-u1 is pumbench-u2
        my $user = lc($local);
        $user = "pumbench-u$1" if $user =~ /^(\\d+)pumbench-u1$/;
        next if $seen{$user}++;
        my @pw = getpwnam($user);
        next unless @pw;
        my $filter = "$pw[7]/.user-milter";
        next unless -x $filter;
        $asked++;
        my $pid = fork();
        if (!defined $pid) { action_tempfail("fork failed"); return; }
        if ($pid == 0) {
            open(STDIN, '<', './INPUTMSG') or exit 111;
            open(STDOUT, '>', '/dev/null');
            exec('/usr/bin/sudo', '-n', '-u', $user, $filter) or exit 111;
        }
        waitpid($pid, 0);
        $rejects++ if ($? >> 8) == 1;
    }
    action_bounce("Message rejected by its recipients", 550, "5.7.1") if $asked > 0 && $rejects == $asked;
}
1;
`;
}

export interface MimeDefangPeer {
  socket: SocketSpec;
  multiplexor: Daemon;
  milter: Daemon;
  /** Both daemons: the tree whose CPU is counted. */
  pids: number[];
  stop(): Promise<void>;
}

/** Writes the sudoers rule limited to these users and their filter files. */
export function installSudoers(users: readonly BenchUser[]): void {
  const runas = users.map((u) => u.name).join(', ');
  const cmds = users.map((u) => u.filterPath).join(', ');
  const text = `# temporary, for per-user-milter's benchmark; removed at its end\nDefaults:defang !syslog, !lecture, !pam_session\ndefang ALL=(${runas}) NOPASSWD: ${cmds}\n`;
  const tmp = `${SUDOERS_FILE}.tmp`;
  writeFileSync(tmp, text, { mode: 0o440 });
  const check = spawnSync('visudo', ['-cf', tmp], { encoding: 'utf8' });
  if (check.status !== 0) {
    rmSync(tmp, { force: true });
    throw new Error(`sudoers rule rejected by visudo: ${check.stdout}${check.stderr}`);
  }
  spawnSync('mv', [tmp, SUDOERS_FILE]);
}

export function removeSudoers(): void {
  rmSync(SUDOERS_FILE, { force: true });
  rmSync(`${SUDOERS_FILE}.tmp`, { force: true });
}

function defangIds(): { uid: number; gid: number } {
  const r = spawnSync('getent', ['passwd', 'defang'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('no user defang: install the mimedefang package (bench/setup.sh)');
  const f = r.stdout.trim().split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/**
 * Starts the multiplexor (workers: `minWorkers`..`maxWorkers`) and the milter
 * on a unix socket that Postfix's smtpd may use. `dir` must not exist yet or
 * belong to the bench; it is the spool (defang, 0750).
 */
export async function startMimeDefang(dir: string, opts: { minWorkers: number; maxWorkers: number }): Promise<MimeDefangPeer> {
  const { uid, gid } = defangIds();
  const spool = path.join(dir, 'spool');
  const sockDir = path.join(dir, 'sock');
  mkdirSync(spool, { recursive: true });
  mkdirSync(sockDir, { recursive: true });
  chownSync(dir, 0, 0);
  chmodSync(dir, 0o755);
  chownSync(spool, uid, gid);
  chmodSync(spool, 0o750);
  chownSync(sockDir, uid, gid);
  chmodSync(sockDir, 0o755);
  const filter = path.join(dir, 'filter.pl');
  writeFileSync(filter, filterText(), { mode: 0o644 });
  const mxSock = path.join(spool, 'mx.sock');
  const multiplexor = Daemon.start(
    'mimedefang-multiplexor',
    '/usr/bin/mimedefang-multiplexor',
    ['-D', '-U', 'defang', '-z', spool, '-s', mxSock, '-f', '/usr/bin/mimedefang.pl', '-F', filter,
     '-m', String(opts.minWorkers), '-x', String(opts.maxWorkers), '-r', '100000',
     // queue requests when every worker is busy (like per-user-milter's pool queue) instead of failing them
     '-q', '128', '-Q', '120', '-p', path.join(spool, 'mx.pid')],
    path.join(dir, 'multiplexor.log'),
  );
  await waitForSocket('mimedefang-multiplexor', { path: mxSock }, multiplexor.child);
  const socket = unixSocket(path.join(sockDir, 'milter.sock'));
  const milter = Daemon.start(
    'mimedefang',
    '/usr/bin/mimedefang',
    ['-D', '-U', 'defang', '-z', spool, '-m', mxSock, '-p', socket.spec, '-X', '-q', '-P', path.join(spool, 'md.pid')],
    path.join(dir, 'mimedefang.log'),
  );
  const sockPath = (socket.connect as { path: string }).path;
  for (let i = 0; i < 200 && !existsSync(sockPath); i++) {
    if (!milter.running) break;
    await sleep(50);
  }
  // Postfix's smtpd (user postfix) must be able to connect: the bench, as root, opens the socket up.
  if (existsSync(sockPath)) chmodSync(sockPath, 0o666);
  await waitForSocket('mimedefang', socket.connect, milter.child);
  // Let the minimum number of workers come up before the load starts.
  await sleep(1500);
  return {
    socket,
    multiplexor,
    milter,
    pids: [multiplexor.pid, milter.pid],
    async stop() {
      await milter.stop();
      await multiplexor.stop();
    },
  };
}
