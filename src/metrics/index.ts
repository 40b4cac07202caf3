// Runs in: the milter process.
//
// Prometheus metrics (contract §6).
export * from './metrics.js';
export * from './server.js';
