import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { privilegesFrom } from '../../../src/filter/privileges.js';

const status = (amb: string): string => `Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t00000000000000c0\nCapEff:\t00000000000000c0\nCapBnd:\t00000000000000c0\nCapAmb:\t${amb}\n`;

describe('privilegesFrom', () => {
  it('root can switch users and is root', () => {
    assert.deepEqual(privilegesFrom(0, ''), { switchUsers: true, root: true });
  });
  it('a user with ambient CAP_SETUID + CAP_SETGID (0xc0) can switch users, without root powers', () => {
    assert.deepEqual(privilegesFrom(998, status('00000000000000c0')), { switchUsers: true, root: false });
  });
  it('effective but not ambient capabilities do not survive the launcher exec: no switch', () => {
    assert.deepEqual(privilegesFrom(998, status('0000000000000000')), { switchUsers: false, root: false });
  });
  it('CAP_SETUID alone is not enough', () => {
    assert.deepEqual(privilegesFrom(998, status('0000000000000080')), { switchUsers: false, root: false });
  });
});
