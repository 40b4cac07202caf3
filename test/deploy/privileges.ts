// Running `per-user-milter serve` the way a service manager would, with a
// given identity and capability set, and checking that users' filters still
// run as their users with no capabilities left, and that serve itself ends
// up as milter.user without any. Shared by systemd.test.ts
// (the unit, the bwrap drop-in) and kubernetes.test.ts (the pod's
// securityContext), which describe their privileges as unit-file text.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import {
  deliver, ensureUser, freePort, httpGet, metricValue, readDeploy, sleep, startServe, tmpDir, waitFor, writeFilter,
} from './support.js';

export type Unit = Map<string, Map<string, string[]>>;

/** A unit file as section -> key -> values (a key may repeat). */
export function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section = '';
  let pending = '';
  for (const raw of text.split('\n')) {
    let line = pending + raw.trim();
    pending = '';
    if (line.endsWith('\\')) {
      pending = line.slice(0, -1) + ' ';
      continue;
    }
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1] ?? '';
      if (!unit.has(section)) unit.set(section, new Map());
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not key=value: ${line}`);
    const key = line.slice(0, eq).trim();
    line = line.slice(eq + 1).trim();
    const keys = unit.get(section);
    assert.ok(keys, `key ${key} outside a section`);
    keys.set(key, [...(keys.get(key) ?? []), line]);
  }
  return unit;
}

export const UNIT_TEXT = () => readDeploy('systemd/per-user-milter.service');
export const service = (u: Unit) => u.get('Service') ?? new Map<string, string[]>();
export const one = (u: Unit, key: string): string | undefined => service(u).get(key)?.at(-1);

/** The capabilities the unit grants, as a sorted list of CAP_* names. */
export function unitCaps(u: Unit, key: 'AmbientCapabilities' | 'CapabilityBoundingSet'): string[] {
  // Assignments add up; an empty one resets the list (systemd.exec(5)).
  let caps: string[] = [];
  for (const v of service(u).get(key) ?? []) caps = v === '' ? [] : [...caps, ...v.split(/\s+/).filter(Boolean)];
  return [...new Set(caps)].sort();
}


/** CAP_SETUID -> setuid, for setpriv. */
const setprivCap = (c: string) => c.replace(/^CAP_/, '').toLowerCase();

function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1).trim();
  }
  return out;
}

/** Capability bit mask of CAP_* names (numbers from linux/capability.h). */
function capMask(caps: string[]): bigint {
  const bits: Record<string, number> = { CAP_CHOWN: 0, CAP_DAC_READ_SEARCH: 2, CAP_KILL: 5, CAP_SETGID: 6, CAP_SETUID: 7, CAP_SETPCAP: 8, CAP_SYS_ADMIN: 21 };
  return caps.reduce((m, c) => m | (1n << BigInt(bits[c] ?? 63)), 0n);
}

/** Pids of live processes whose real uid is `uid`. */
function processesOf(uid: number): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const st = procStatus(Number(name));
      if (Number((st.Uid ?? '').split(/\s+/)[0]) === uid && !(st.State ?? '').startsWith('Z')) pids.push(Number(name));
    } catch {
      // gone
    }
  }
  return pids;
}

const RECORD = `#!/bin/sh
# Records who this filter runs as (test/deploy/systemd.test.ts).
{
  echo "uid=$(id -u)"
  echo "gid=$(id -g)"
  grep -E '^(CapPrm|CapEff|CapAmb|NoNewPrivs):' /proc/self/status
} > "$HOME/ran-as"
`;

export interface Variant {
  /** Unit text (with drop-ins appended). */
  unitText: string;
  sandbox: 'setpriv' | 'bwrap';
  portFrom: number;
  /** Users' name prefix, so variants do not share homes. */
  prefix: string;
  /** The program instead of this build's dist/src/main.js: an installed per-user-milter. */
  command?: string[];
  /** The account serve drops to (a system user made for the test; default pumops-svc). */
  serviceUser?: string;
}

/**
 * Starts serve the way systemd would for `unitText`: as its User= (the
 * dedicated user is played by pumops-svc), with its AmbientCapabilities=,
 * CapabilityBoundingSet= and NoNewPrivileges=, then drives messages through
 * the unix socket in a setgid directory and checks who the filters ran as.
 */
export async function filtersRunAsTheirUsers(t: TestContext, v: Variant): Promise<void> {
  const unit = parseUnit(v.unitText);
  const ambient = unitCaps(unit, 'AmbientCapabilities');
  const bounding = unitCaps(unit, 'CapabilityBoundingSet');
  const asRoot = (one(unit, 'User') ?? 'root') === 'root';
  if (!asRoot) assert.deepEqual(bounding, ambient, 'a non-root service holds its bounding set as ambient capabilities');
  assert.equal(one(unit, 'NoNewPrivileges'), 'yes');

  // The account serve runs as: started as root, it drops to milter.user (pumops-svc stands in for per-user-milter).
  const svc = ensureUser(t, v.serviceUser ?? 'pumops-svc', { system: true });
  const mta = ensureUser(t, 'pumops-mta', { system: true });
  const accepter = ensureUser(t, `${v.prefix}1`);
  const rejecter = ensureUser(t, `${v.prefix}2`);
  const sleeper = ensureUser(t, `${v.prefix}3`);
  for (const u of [accepter, rejecter, sleeper]) fs.rmSync(path.join(u.home, 'ran-as'), { force: true });
  writeFilter(accepter, RECORD + 'exit 0\n');
  writeFilter(rejecter, RECORD + `echo "5.7.1 ${rejecter.name} says no"\nexit 1\n`);
  // Ignores SIGTERM, so only the SIGKILL after the grace period ends it.
  writeFilter(sleeper, RECORD + "trap '' TERM\nsleep 60 &\nwait\nsleep 60\n");

  // The layout the unit + tmpfiles.d give: a 0700 spool and a setgid socket
  // directory whose group is the MTA's (pumops-mta stands in for postfix).
  const base = tmpDir(t, 'caps');
  fs.chmodSync(base, 0o755);
  const spool = path.join(base, 'spool');
  fs.mkdirSync(spool, { mode: 0o700 });
  fs.chownSync(spool, svc.uid, svc.gid);
  const sockDir = path.join(base, 'postfix-chroot', 'per-user-milter');
  fs.mkdirSync(sockDir, { recursive: true });
  fs.chmodSync(path.dirname(sockDir), 0o755);
  fs.chownSync(sockDir, svc.uid, mta.gid);
  fs.chmodSync(sockDir, 0o2750);
  const sock = path.join(sockDir, 'milter.sock');
  const metricsPort = await freePort(v.portFrom);
  const config = path.join(base, 'config.json');
  fs.writeFileSync(config, JSON.stringify({
    milter: { listen: `unix:${sock}`, socketMode: '0660' },
    spool: { dir: spool },
    filter: { timeout: 1500, sandbox: v.sandbox, onError: 'accept' },
    ...(asRoot ? { milter: { listen: `unix:${sock}`, socketMode: '0660', user: svc.name } } : {}),
    pool: { threads: 2 },
    metrics: { listen: `127.0.0.1:${metricsPort}` },
    log: { level: 'info', format: 'text' },
  }, null, 2));
  fs.chmodSync(config, 0o644);

  // ExecStart of the unit, with our build instead of /usr/bin/per-user-milter,
  // under User=/AmbientCapabilities=/CapabilityBoundingSet=/NoNewPrivileges=.
  const capList = (caps: string[]) => caps.map((c) => `+${setprivCap(c)}`).join(',');
  const launcher = asRoot
    ? ['setpriv', `--bounding-set=-all,${capList(bounding)}`, '--inh-caps=-all', '--no-new-privs', '--']
    : [
      'setpriv', `--reuid=${svc.uid}`, `--regid=${svc.gid}`, '--clear-groups',
      `--inh-caps=${capList(ambient)}`, `--ambient-caps=${capList(ambient)}`, `--bounding-set=-all,${capList(bounding)}`, '--no-new-privs', '--',
    ];
  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  const serve = await startServe(t, ['--config', config], {
    launcher,
    ...(v.command ? { command: v.command } : {}),
    env: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' },
    ready: async () => fs.existsSync(sock) && (await httpGet(metricsUrl).catch(() => ({ status: 0 }))).status === 200,
  });
  const pid = serve.child.pid ?? 0;
  const own = procStatus(pid);
  assert.equal(Number(own.Uid?.split(/\s+/)[0]), svc.uid, 'serve runs as the service user');
  // Started as root, serve drops every capability (only the launcher keeps the unit's set).
  assert.equal(BigInt('0x' + own.CapEff), asRoot ? 0n : capMask(bounding), 'serve holds no capability');
  assert.equal(own.NoNewPrivs, '1');

  // The socket: ours, group of the MTA through the setgid directory, 0660.
  const st = fs.statSync(sock);
  assert.ok(st.isSocket());
  assert.equal(st.uid, svc.uid);
  assert.equal(st.gid, mta.gid, 'socket group comes from the setgid directory');
  assert.equal(st.mode & 0o777, 0o660);
  // The MTA's user can connect; a user outside its group cannot even enter.
  const tryConnect = (uid: number, gid: number) => spawnSync('setpriv', [
    `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', process.execPath, '-e',
    `require('net').connect(${JSON.stringify(sock)}).on('connect',()=>process.exit(0)).on('error',e=>{console.error(e.code);process.exit(1)})`,
  ], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(tryConnect(mta.uid, mta.gid).status, 0, 'the MTA user connects');
  const denied = tryConnect(accepter.uid, accepter.gid);
  assert.equal(denied.status, 1);
  assert.match(denied.stderr, /EACCES/);

  const spec = `unix:${sock}`;
  const headers: Array<[string, string]> = [['From', 'sender@pumops.test'], ['Subject', 'capabilities']];
  const ranAs = (u: typeof accepter): string => {
    const file = path.join(u.home, 'ran-as');
    assert.ok(fs.existsSync(file), `${u.name}'s filter did not run as ${u.name} (uid ${u.uid}): it could not write its home\n${serve.output()}`);
    const ran = fs.readFileSync(file, 'utf8');
    assert.match(ran, new RegExp(`^uid=${u.uid}$`, 'm'), `${u.name}'s filter ran as its user:\n${ran}`);
    assert.match(ran, new RegExp(`^gid=${u.gid}$`, 'm'));
    // No capability may survive the switch between two non-root uids.
    for (const set of ['CapPrm', 'CapEff', 'CapAmb']) {
      assert.match(ran, new RegExp(`^${set}:\\s+0+$`, 'm'), `${u.name}'s filter still holds capabilities:\n${ran}`);
    }
    assert.match(ran, /^NoNewPrivs:\s+1$/m);
    return ran;
  };

  const ok = await deliver(spec, { from: 'sender@pumops.test', to: [`${accepter.name}@pumops.test`], headers, body: 'hello\n', queueId: 'CAP0001' });
  assert.equal(ok.type, 'accept', `accepted: ${JSON.stringify(ok)}\n${serve.output()}`);
  ranAs(accepter);
  const no = await deliver(spec, { from: 'sender@pumops.test', to: [`${rejecter.name}@pumops.test`], headers, body: 'hello\n', queueId: 'CAP0002' });
  assert.equal(no.type, 'replycode', `rejected: ${JSON.stringify(no)}\n${serve.output()}`);
  assert.equal(no.text, `550 5.7.1 ${rejecter.name} says no`);
  ranAs(rejecter);

  // A filter that outlives filter.timeout and ignores SIGTERM: the launcher
  // must be able to SIGKILL every process of the run (CAP_KILL).
  // onError=accept, so the message is accepted.
  const slow = await deliver(spec, { from: 'sender@pumops.test', to: [`${sleeper.name}@pumops.test`], headers, body: 'hello\n', queueId: 'CAP0003' });
  assert.equal(slow.type, 'accept', JSON.stringify(slow));
  ranAs(sleeper);
  await waitFor(`no process of ${sleeper.name} left`, 10_000, () => (processesOf(sleeper.uid).length === 0 ? true : undefined));
  const metrics = (await httpGet(metricsUrl)).body;
  assert.equal(metricValue(metrics, 'per_user_milter_filter_runs_total', { outcome: 'timeout' }), 1);
  assert.equal(metricValue(metrics, 'per_user_milter_filter_runs_total', { outcome: 'accept' }), 1);
  assert.equal(metricValue(metrics, 'per_user_milter_filter_runs_total', { outcome: 'reject' }), 1);

  // systemd's reload (ExecReload=kill -HUP $MAINPID): still serving after it.
  fs.rmSync(path.join(accepter.home, 'ran-as'), { force: true });
  process.kill(pid, 'SIGHUP');
  await sleep(1000);
  assert.equal(serve.child.exitCode, null, `serve exited on SIGHUP\n${serve.output()}`);
  const again = await deliver(spec, { from: 'sender@pumops.test', to: [`${accepter.name}@pumops.test`], headers, body: 'hello\n', queueId: 'CAP0004' });
  assert.equal(again.type, 'accept', JSON.stringify(again));
  ranAs(accepter);

  // systemd's stop: SIGTERM, exit 0.
  assert.equal(await serve.stop(), 0, serve.output());
}
