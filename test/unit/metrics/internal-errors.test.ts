// internal_errors_total moves for a handler step that failed past the
// application (the engine answered 451 4.3.0), not for a failed abort/close
// (nobody was answered); reasons are counted apart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createMetrics } from '../../../src/metrics/index.js';

async function value(text: Promise<string>, series: string): Promise<number | undefined> {
  const line = (await text).split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('engine-level handler errors count as reason other; abort and close failures do not', async () => {
  const m = createMetrics({ perUserLabels: false, processMetrics: false });
  const events = m.milterEvents();
  events.handlerError({ step: 'rcpt' });
  events.handlerError({ step: 'eom' });
  events.handlerError({ step: 'abort' });
  events.handlerError({ step: 'close' });
  m.internalError('spool');
  assert.equal(await value(m.text(), 'per_user_milter_internal_errors_total{reason="other"}'), 2);
  assert.equal(await value(m.text(), 'per_user_milter_internal_errors_total{reason="spool"}'), 1);
  assert.equal(await value(m.text(), 'per_user_milter_internal_errors_total{reason="runner"}'), 0);
});
