// Runs in: the milter process (and `try`).
//
// Message spooling (contract §3 `spool.dir`, §4 message form).
export * from './file.js';
export * from './header.js';
export * from './line-endings.js';
export * from './raw.js';
export * from './spool.js';
export * from './location.js';
