// Runs in: the milter process.
//
// Recipient classification: RCPT -> local user or not (contract §3, §5).
export * from './address.js';
export * from './classify.js';
export * from './map.js';
export * from './transaction.js';
