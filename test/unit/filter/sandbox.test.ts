// The launcher chain argv, environment and paths, without running anything.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { filterPathFor } from '../../../src/filter/locate.js';
import { buildLaunch, bwrapArgs, FILTER_ENV_NAMES, filterEnvironment, prlimitArgs, sandboxWarnings, setprivArgs, type LaunchInput } from '../../../src/filter/sandbox.js';
import type { EnvelopeFacts } from '../../../src/filter/job.js';
import type { UserAccount } from '../../../src/users/user.js';

const alice: UserAccount = { name: 'alice', uid: 1001, gid: 1001, groups: [1001, 100, 1001], home: '/home/alice', shell: '/bin/bash' };
const env: EnvelopeFacts = {
  SENDER: 's@x', RECIPIENT: 'alice+ext@y', LOCAL: 'alice+ext', EXTENSION: 'ext', DOMAIN: 'y', CLIENT_ADDRESS: '192.0.2.1',
  CLIENT_HOSTNAME: 'h', CLIENT_HELO: 'helo', CLIENT_PROTOCOL: 'ESMTP', QUEUE_ID: 'Q', SASL_METHOD: '', SASL_USERNAME: 'a\0b',
};
const limits = { cpuSeconds: 20, memoryBytes: 1 << 30, processes: 64, fileSizeBytes: 100 << 20, outputBytes: 65536 };
const tools = { sh: '/bin/sh', env: '/usr/bin/env', prlimit: '/usr/bin/prlimit', setpriv: '/usr/bin/setpriv', bwrap: '/usr/bin/bwrap' };
const layout = [{ path: '/usr', symlinkTo: null }, { path: '/bin', symlinkTo: 'usr/bin' }, { path: '/etc', symlinkTo: null }];

function input(over: Partial<LaunchInput>): LaunchInput {
  return { sandbox: 'setpriv', user: alice, filterPath: '/home/alice/.user-milter', limits, env: filterEnvironment(alice, env), privileged: true, umaskShim: false, tools, layout, ...over };
}

test('filterPathFor: ~ is the home, %u the name', () => {
  assert.equal(filterPathFor(alice, '~/.user-milter'), '/home/alice/.user-milter');
  assert.equal(filterPathFor(alice, '/etc/pum/%u/filter'), '/etc/pum/alice/filter');
  assert.equal(filterPathFor(alice, '~/x/../%u.f'), '/home/alice/alice.f');
});

test('filterEnvironment: exactly the documented names, from the user and the envelope, no NUL', () => {
  const e = filterEnvironment(alice, env);
  assert.deepEqual(Object.keys(e), [...FILTER_ENV_NAMES]);
  assert.equal(e.HOME, '/home/alice');
  assert.equal(e.SHELL, '/bin/bash');
  assert.equal(e.USER, 'alice');
  assert.equal(e.LOGNAME, 'alice');
  assert.equal(e.PATH, '/usr/local/bin:/usr/bin:/bin');
  assert.equal(e.RECIPIENT, 'alice+ext@y');
  assert.equal(e.SASL_USERNAME, 'ab');
});

test('setpriv chain: prlimit then setpriv with uid, gid, groups, no_new_privs, no caps', () => {
  const p = buildLaunch(input({}));
  assert.equal(p.file, '/usr/bin/prlimit');
  assert.deepEqual(p.args, [
    '--cpu=20', `--as=${1 << 30}`, '--nproc=64', `--fsize=${100 << 20}`, '--core=0', '--',
    '/usr/bin/setpriv', '--reuid=+1001', '--regid=+1001', '--groups=+1001,+100', '--no-new-privs', '--inh-caps=-all', '--pdeathsig=KILL', '--bounding-set=-all',
    '--', '/home/alice/.user-milter',
  ]);
  assert.equal(p.cwd, '/home/alice');
  assert.equal(p.uid, undefined);
  assert.deepEqual(p.env, filterEnvironment(alice, env));
});

test('no supplementary groups: --clear-groups; unprivileged: no user switch, no bounding set, limits clamped', () => {
  assert.ok(setprivArgs({ ...alice, groups: [] }, true).includes('--clear-groups'));
  const unpriv = setprivArgs(alice, false);
  assert.deepEqual(unpriv, ['--no-new-privs', '--inh-caps=-all', '--pdeathsig=KILL']);
  assert.deepEqual(prlimitArgs(limits, { nproc: 10, cpu: 100 }).slice(0, 3), ['--cpu=20', `--as=${1 << 30}`, '--nproc=10']);
});

test('bwrap chain: namespaces, read-only system, private /tmp, only the home writable, caps for setpriv inside, env -u PWD', () => {
  const p = buildLaunch(input({ sandbox: 'bwrap' }));
  const all = [p.file, ...p.args];
  const b = all.indexOf('/usr/bin/bwrap');
  const e = all.indexOf('/usr/bin/env');
  const s = all.indexOf('/usr/bin/setpriv');
  assert.ok(all[0] === '/usr/bin/prlimit' && b > 0 && e > b && s > e, all.join(' '));
  const bw = all.slice(b, e).join(' ');
  for (const part of ['--unshare-pid', '--die-with-parent', '--new-session', '--ro-bind /usr /usr', '--symlink usr/bin /bin', '--tmpfs /tmp', '--dir /home --bind /home/alice /home/alice', '--chdir /home/alice', '--cap-add CAP_SETUID']) {
    assert.ok(bw.includes(part), `${part} in ${bw}`);
  }
  assert.ok(!bw.includes('--unshare-net'), 'network stays (spamc, DNS)');
  assert.deepEqual(all.slice(e, e + 4), ['/usr/bin/env', '-u', 'PWD', '--']);
  assert.equal(all.at(-1), '/home/alice/.user-milter');
  // A filter outside the home and the system directories gets its own read-only bind.
  assert.ok(bwrapArgs(alice, '/srv/filters/alice', true, layout).join(' ').includes('--dir /srv --dir /srv/filters --ro-bind /srv/filters/alice /srv/filters/alice'));
  // Parents inside a bound system directory exist already.
  assert.ok(!bwrapArgs({ ...alice, home: '/usr/home/alice' }, '/x', true, layout).includes('--dir'));
  assert.ok(!bwrapArgs(alice, '/usr/local/lib/f', true, layout).join(' ').includes('--ro-bind /usr/local/lib/f'));
  assert.ok(!bwrapArgs(alice, '/x', false, layout).includes('--cap-add'));
});

test('none: the filter itself; as root with node switching to the user; umask shim when needed', () => {
  const p = buildLaunch(input({ sandbox: 'none' }));
  assert.equal(p.file, '/home/alice/.user-milter');
  assert.deepEqual(p.args, []);
  assert.equal(p.uid, 1001);
  assert.equal(p.gid, 1001);
  const q = buildLaunch(input({ sandbox: 'none', privileged: false, umaskShim: true }));
  assert.equal(q.file, '/bin/sh');
  assert.deepEqual(q.args, ['-c', 'umask 077 && unset PWD && exec "$@"', 'sh', '/home/alice/.user-milter']);
  assert.equal(q.uid, undefined);
});

test('warnings: unprivileged and none say what is given up', () => {
  assert.deepEqual(sandboxWarnings('setpriv', true), []);
  assert.match(sandboxWarnings('setpriv', false, 1234).join('\n'), /uid 1234/);
  assert.equal(sandboxWarnings('none', false, 1).length, 2);
});
