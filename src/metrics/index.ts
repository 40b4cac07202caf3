// Runs in: the milter process.
//
// Prometheus metrics (docs/reference.md §6).
export * from './metrics.js';
export * from './server.js';
