// Runs in: the milter process (and `try`).
//
// Logging: pino, text or JSON (contract §3 `log.*`).
export * from './logger.js';
export * from './text.js';
