import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SocketSpecError, formatSocketSpec, parseSocketSpec, type SocketSpec } from '../../../src/milter/socket-spec.js';

describe('socket specs', () => {
  const ok: Array<[string, SocketSpec, string]> = [
    ['inet:8890@127.0.0.1', { kind: 'inet', family: 4, port: 8890, host: '127.0.0.1' }, 'inet:8890@127.0.0.1'],
    ['inet:8890@localhost', { kind: 'inet', family: 4, port: 8890, host: 'localhost' }, 'inet:8890@localhost'],
    ['inet:8890', { kind: 'inet', family: 4, port: 8890, host: undefined }, 'inet:8890'],
    ['inet6:8890@::1', { kind: 'inet', family: 6, port: 8890, host: '::1' }, 'inet6:8890@::1'],
    ['inet6:8890@[::1]', { kind: 'inet', family: 6, port: 8890, host: '::1' }, 'inet6:8890@::1'],
    ['inet6:8890', { kind: 'inet', family: 6, port: 8890, host: undefined }, 'inet6:8890'],
    ['inet:0@127.0.0.1', { kind: 'inet', family: 4, port: 0, host: '127.0.0.1' }, 'inet:0@127.0.0.1'],
    ['unix:/run/pum/milter.sock', { kind: 'unix', path: '/run/pum/milter.sock' }, 'unix:/run/pum/milter.sock'],
    ['local:/run/pum/milter.sock', { kind: 'unix', path: '/run/pum/milter.sock' }, 'unix:/run/pum/milter.sock'],
    ['UNIX:relative.sock', { kind: 'unix', path: 'relative.sock' }, 'unix:relative.sock'],
    ['/var/run/m.sock', { kind: 'unix', path: '/var/run/m.sock' }, 'unix:/var/run/m.sock'],
    ['  inet:25@host  ', { kind: 'inet', family: 4, port: 25, host: 'host' }, 'inet:25@host'],
  ];
  for (const [text, spec, canonical] of ok) {
    it(`parses ${JSON.stringify(text)}`, () => {
      assert.deepEqual(parseSocketSpec(text), spec);
      assert.equal(formatSocketSpec(spec), canonical);
    });
  }

  const bad: Array<[string, RegExp]> = [
    ['inet:127.0.0.1:8890', /Postfix syntax/],
    ['inet:x@127.0.0.1', /not a number/],
    ['inet:65536@127.0.0.1', /out of range/],
    ['inet:8890@', /empty host/],
    ['unix:', /empty socket path/],
    ['tcp:8890@127.0.0.1', /unknown socket type/],
    ['8890', /expected inet/],
    ['', /expected inet/],
  ];
  for (const [text, message] of bad) {
    it(`refuses ${JSON.stringify(text)}`, () => assert.throws(() => parseSocketSpec(text), (e: unknown) => e instanceof SocketSpecError && message.test(e.message)));
  }
});
