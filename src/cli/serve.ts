// Runs in: the milter process (the composition root).
//
// `per-user-milter serve`: the composition root. Builds every part from the
// configuration, wires them together, and handles signals: SIGTERM/SIGINT
// drain and exit 0, SIGHUP reloads the configuration without dropping
// connections.
import { createPerUserApplication, type AppContext } from '../app/index.js';
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { errorReply } from '../errors.js';
import { launcherReport } from '../filter/privileges.js';
import { LAUNCHER_SOCKET_ENV } from '../filter/run.js';
import { LauncherConnection } from '../launcher/client.js';
import { startLauncher, type RunningLauncher } from '../launcher/start.js';
import { createLogger, isJournalStream, type Logger } from '../log/index.js';
import { createMetrics, MetricsServer, type Metrics } from '../metrics/index.js';
import { RunnerClient } from '../runner/client.js';
import { RecipientClassifier, type ClassifierOptions } from '../recipients/index.js';
import { MilterServer } from '../server/server.js';
import { Spool, makeSpoolDir, planSpoolDir, type SpoolDirectory } from '../spool/index.js';
import { createUserResolver } from '../users/resolve.js';
import { splitConfigArgs } from './args.js';
import { startPrivilegeSplit, StartRefused } from './privsep.js';
import { checkStartup } from './startup-checks.js';
import { SHUTDOWN_MARGIN_MS } from '../timeouts.js';

/** Keys that only take effect at start: a reload that changes them says so. */
const RESTART_KEYS = [
  'milter.listen', 'milter.socketMode', 'milter.maxConnections', 'milter.user', 'spool.dir', 'pool.threads', 'pool.maxQueue',
  'metrics.listen', 'metrics.perUserLabels', 'log.format',
  // The launcher's arguments: fixed for its life, so that the milter process cannot name another program,
  // sandbox, limit or timeout, nor tell it who a user is.
  'filter.path', 'filter.rcptPath', 'filter.default', 'filter.cgroup', 'filter.sandbox', 'filter.limits',
  'filter.timeout', 'filter.rcptTimeout', 'users.passwdFile', 'users.minUid', 'users.maxUid',
];

/** Exit status when the privileged launcher died: the supervisor restarts us (docs/sandbox.md). */
const EXIT_LAUNCHER_GONE = 70;

function get(config: Config, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], config);
}

function classifierOptions(config: Config, metrics: Metrics): ClassifierOptions {
  const users = createUserResolver({ passwdFile: config.users.passwdFile, minUid: config.users.minUid, onLookup: (r) => metrics.userLookup(r) });
  return { recipients: config.recipients, users };
}

/** How long a SIGTERM waits for messages in flight: a filter may run its whole timeout plus the kill grace. */
function shutdownGraceMs(config: Config): number {
  return config.filter.timeout + SHUTDOWN_MARGIN_MS;
}

/** A refusal before the logger exists, on standard error; under journald with priority err. */
function refuse(line: string): void {
  process.stderr.write(`${isJournalStream(2) ? '<3>' : ''}per-user-milter: ${line}\n`);
}

export async function serveCommand(argv: string[]): Promise<number> {
  let args;
  let loaded;
  try {
    args = splitConfigArgs(argv);
    if (args.rest.length > 0) throw new ConfigError([`unexpected argument: ${args.rest[0]}`]);
    loaded = loadConfig({ file: args.configFile, args: args.keyArgs });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const line of err.problems) refuse(`config: ${line}`);
    return 1;
  }
  const { configFile: file, keyArgs } = args;
  let config = loaded.config;
  // What check-config checks, serve checks before it starts anything.
  const findings = await checkStartup(config);
  const errors = findings.filter((f) => f.severity === 'error');
  if (errors.length > 0) {
    for (const f of errors) refuse(`config: ${f.text}`);
    refuse('not started (per-user-milter check-config shows the same)');
    return 1;
  }
  const log: Logger = createLogger({ level: config.log.level, format: config.log.format, destination: 1 });
  log.info({ config: loaded.file ?? 'built-in defaults' }, 'per-user-milter starting');
  for (const f of findings) log.warn({}, f.text);

  // Metrics first: the user resolver counts its lookups. The pool gauges and
  // the helper processes are read at scrape time, once they exist.
  let pool: RunnerClient | undefined;
  let launcher: RunningLauncher | undefined;
  const metrics = createMetrics({
    perUserLabels: config.metrics.perUserLabels,
    poolStats: () => pool?.stats() ?? { queueSize: 0, utilization: 0 },
    maxConnections: config.milter.maxConnections,
    processes: () => [
      { process: 'milter', pid: process.pid },
      { process: 'runner', pid: pool?.pid ?? null },
      { process: 'launcher', pid: launcher?.pid ?? null },
    ],
  });
  // Anything that still fails on the way up is a fatal line and exit 1, never a stack trace.
  let spoolDir: SpoolDirectory | undefined;
  let spool: Spool;
  let classifier: RecipientClassifier;
  let split: Awaited<ReturnType<typeof startPrivilegeSplit>>;
  try {
    spoolDir = await makeSpoolDir(planSpoolDir(config.spool.dir));
    // Before anything touches the network: the launcher, then (started as
    // root) the drop to milter.user, who gets the spool directory.
    split = await startPrivilegeSplit(config, spoolDir.dir, (line) => log.warn({ line: line.slice(0, 500) }, 'launcher'));
    launcher = split.launcher;
    const report = launcherReport(launcher.ready, process.getuid?.() ?? -1);
    for (const line of report.info) log.info({}, line);
    for (const line of report.warn) log.warn({}, line);
    // The runner process and its worker threads find the launcher here.
    process.env[LAUNCHER_SOCKET_ENV] = split.settings.socket;
    const opened = await Spool.open(spoolDir.dir);
    spool = opened.spool;
    log.info({ spoolDir: spoolDir.dir, staleRemoved: opened.staleRemoved }, 'spool ready');
    classifier = await RecipientClassifier.create(classifierOptions(config, metrics));
  } catch (err) {
    const lines = err instanceof StartRefused ? err.lines : [(err as Error).message];
    for (const line of lines) log.fatal({}, `cannot start: ${line}`);
    await launcher?.stop();
    await spoolDir?.release();
    return 1;
  }
  const ownSpool = spoolDir;
  const settings = split.settings;
  // The milter's own launcher connection, for STAT at RCPT; a new one when it broke.
  let statConnection: Promise<LauncherConnection> | null = null;
  const launcherConnection = async (): Promise<LauncherConnection> => {
    const current = await statConnection?.catch(() => null);
    if (current && !current.closed) return current;
    statConnection = LauncherConnection.connect(settings.socket);
    return statConnection;
  };
  // The piscina pool lives in a small runner process of its own: every filter
  // run forks the process that spawns it (docs/sandbox.md, "Where the pool runs").
  const runner = new RunnerClient({
    threads: config.pool.threads,
    maxQueue: config.pool.maxQueue,
    maxPerUser: config.filter.maxPerUser,
    onUnexpectedExit: (how, failedJobs) => log.error({ failedJobs }, `filter runner process ${how}; its jobs are tempfailed, the next job starts a new one`),
    onStrayOutput: (line) => log.warn({ line: line.slice(0, 200) }, 'filter runner printed something that is not an answer'),
  });
  pool = runner;
  try {
    await runner.ready();
  } catch (err) {
    log.fatal({ err }, 'cannot start the filter runner process');
    await runner.destroy();
    await launcher.stop();
    await ownSpool.release();
    return 1;
  }
  const metricsServer = new MetricsServer(config.metrics.listen, metrics.registry);

  const app: AppContext = {
    config: () => config,
    classify: (input) => classifier.classify(input),
    // Asked at RCPT: the launcher checks as the user, in a child of its own
    // (it looks the account up by uid). `unsafe` counts as having one: the run then reports why. Users
    // outside users.minUid..maxUid (as the launcher was started) never get a run.
    hasFilter: async (user) => {
      if (user.uid < settings.minUid || user.uid > settings.maxUid) return false;
      const a = await (await launcherConnection()).stat({ program: 'filter', user: user.name, uid: user.uid });
      return a.what !== 'none';
    },
    spool,
    runner,
    metrics,
    log,
  };

  let server: MilterServer;
  try {
    const metricsAddress = await metricsServer.start();
    if (metricsAddress) log.info({ metrics: `${metricsAddress.host}:${metricsAddress.port}` }, 'metrics listening on /metrics');
    server = await MilterServer.start({
      listen: config.milter.listen,
      application: createPerUserApplication(app),
      socketMode: parseInt(config.milter.socketMode, 8),
      maxConnections: config.milter.maxConnections,
      progressInterval: config.milter.progressInterval,
      // A step that throws past the application's own handling: still one of our failures.
      errorReply: errorReply('PUM_ERR_INTERNAL'),
      logger: log,
      events: metrics.milterEvents(),
    });
  } catch (err) {
    log.fatal({ err }, 'cannot start');
    await Promise.allSettled([metricsServer.close(), runner.close()]);
    await launcher.stop();
    await ownSpool.release();
    return 1;
  }

  const reload = async (): Promise<void> => {
    try {
      const next = loadConfig({ file, args: keyArgs }).config;
      await classifier.reload(classifierOptions(next, metrics));
      runner.setMaxPerUser(next.filter.maxPerUser);
      const ignored = RESTART_KEYS.filter((k) => JSON.stringify(get(next, k)) !== JSON.stringify(get(config, k)));
      if (ignored.length > 0) log.warn({ keys: ignored.join(',') }, 'reload: these keys take effect only after a restart');
      log.level = next.log.level;
      config = next;
      log.info({}, 'configuration reloaded');
    } catch (err) {
      const lines = err instanceof ConfigError ? err.problems : [(err as Error).message];
      for (const line of lines) log.error({}, `reload failed, keeping the previous configuration: ${line}`);
    }
  };

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string, status = 0): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping: no new connections, finishing messages in flight');
      void (async () => {
        await server.close({ graceMs: shutdownGraceMs(config) });
        await Promise.allSettled([runner.close(), metricsServer.close()]);
        await launcher?.stop();
        await spool.removeAll();
        await ownSpool.release();
        log.info({}, 'stopped');
        process.off('SIGHUP', onHup);
        resolve(status);
      })();
    };
    // The launcher gone: runs in flight fail (451). Privileged, it cannot be
    // started again without root: drain and exit 70 for the supervisor to
    // restart us. Unprivileged, start a new one.
    const watch = (l: RunningLauncher): void => {
      void l.exited.then(async (how) => {
        if (stopping) return;
        if (split.privileged) {
          log.error({}, `the launcher ${how}: every message is tempfailed; draining and exiting ${EXIT_LAUNCHER_GONE} for a restart`);
          stop('launcher gone', EXIT_LAUNCHER_GONE);
          return;
        }
        log.error({}, `the launcher ${how}: starting a new one`);
        try {
          launcher = await startLauncher(settings, { onStderr: (line) => log.warn({ line: line.slice(0, 500) }, 'launcher') });
          watch(launcher);
        } catch (err) {
          log.error({ err }, 'cannot start a new launcher: draining and exiting');
          stop('launcher gone', EXIT_LAUNCHER_GONE);
        }
      });
    };
    watch(split.launcher);
    const onHup = (): void => void reload();
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', onHup);
  });
}
