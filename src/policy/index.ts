// Runs in: every process (pure).
//
// Verdict policy (docs/reference.md §5): pure functions only.
export * from './aggregate.js';
export * from './reply.js';
export * from './split.js';
export * from './skip.js';
export * from './extension.js';
export * from './rcpt-stage.js';
