// Runs in: the milter process (and `try`).
//
// Logging: pino, text or JSON (docs/reference.md §3 `log.*`).
export * from './logger.js';
export * from './text.js';
