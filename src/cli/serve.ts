// `per-user-milter serve`: the composition root. Builds every part from the
// configuration, wires them together, and handles signals: SIGTERM/SIGINT
// drain and exit 0, SIGHUP reloads the configuration without dropping
// connections.
import { createPerUserApplication, type AppContext } from '../app/index.js';
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { hasFilter } from '../filter/locate.js';
import { ownPrivileges } from '../filter/privileges.js';
import { sandboxWarnings } from '../filter/sandbox.js';
import { createLogger, type Logger } from '../log/index.js';
import { createMetrics, MetricsServer } from '../metrics/index.js';
import { RunnerClient } from '../runner/client.js';
import { RecipientClassifier, type ClassifierOptions } from '../recipients/index.js';
import { MilterServer } from '../server/server.js';
import { Spool } from '../spool/index.js';
import { createUserResolver } from '../users/resolve.js';
import { splitConfigArgs } from './args.js';
import { SHUTDOWN_MARGIN_MS } from '../timeouts.js';

/** Keys that only take effect at start: a reload that changes them says so. */
const RESTART_KEYS = ['milter.listen', 'milter.socketMode', 'milter.maxConnections', 'spool.dir', 'pool.threads', 'pool.maxQueue', 'metrics.listen', 'metrics.perUserLabels', 'log.format'];

function get(config: Config, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], config);
}

function classifierOptions(config: Config): ClassifierOptions {
  const users = createUserResolver({ passwdFile: config.users.passwdFile, minUid: config.users.minUid });
  return { recipients: config.recipients, users };
}

/** How long a SIGTERM waits for messages in flight: a filter may run its whole timeout plus the kill grace. */
function shutdownGraceMs(config: Config): number {
  return config.filter.timeout + SHUTDOWN_MARGIN_MS;
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
    for (const line of err.problems) process.stderr.write(`per-user-milter: config: ${line}\n`);
    return 1;
  }
  const { configFile: file, keyArgs } = args;
  let config = loaded.config;
  const log: Logger = createLogger({ level: config.log.level, format: config.log.format, destination: 1 });
  log.info({ config: loaded.file ?? 'built-in defaults' }, 'per-user-milter starting');
  for (const w of sandboxWarnings(config.filter.sandbox, ownPrivileges().switchUsers)) log.warn({}, w);

  const { spool, staleRemoved } = await Spool.open(config.spool.dir);
  log.info({ spoolDir: config.spool.dir, staleRemoved }, 'spool ready');
  const classifier = await RecipientClassifier.create(classifierOptions(config));
  // The piscina pool lives in a small runner process of its own: every filter
  // run forks the process that spawns it (docs/sandbox.md, "Where the pool runs").
  const pool = new RunnerClient({
    threads: config.pool.threads,
    maxQueue: config.pool.maxQueue,
    onUnexpectedExit: (how, failedJobs) => log.error({ failedJobs }, `filter runner process ${how}; its jobs are tempfailed, the next job starts a new one`),
    onStrayOutput: (line) => log.warn({ line: line.slice(0, 200) }, 'filter runner printed something that is not an answer'),
  });
  try {
    await pool.ready();
  } catch (err) {
    log.fatal({ err }, 'cannot start the filter runner process');
    await pool.destroy();
    return 1;
  }
  const metrics = createMetrics({ perUserLabels: config.metrics.perUserLabels, poolStats: () => pool.stats() });
  const metricsServer = new MetricsServer(config.metrics.listen, metrics.registry);

  const app: AppContext = {
    config: () => config,
    classify: (input) => classifier.classify(input),
    hasFilter: (user) => hasFilter(user, config.filter.path),
    spool,
    runner: pool,
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
      logger: log,
      events: metrics.milterEvents(),
    });
  } catch (err) {
    log.fatal({ err }, 'cannot start');
    await Promise.allSettled([metricsServer.close(), pool.close()]);
    return 1;
  }

  const reload = async (): Promise<void> => {
    try {
      const next = loadConfig({ file, args: keyArgs }).config;
      await classifier.reload(classifierOptions(next));
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
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping: no new connections, finishing messages in flight');
      void (async () => {
        await server.close({ graceMs: shutdownGraceMs(config) });
        await Promise.allSettled([pool.close(), metricsServer.close()]);
        await spool.removeAll();
        log.info({}, 'stopped');
        process.off('SIGHUP', onHup);
        resolve(0);
      })();
    };
    const onHup = (): void => void reload();
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', onHup);
  });
}
