// The README must stay true: the MTA snippets it shows are the files the
// end-to-end tests load, every configuration key is documented, and nothing
// it documents as a key is missing from the schema.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { leafKeys } from '../../../src/config/schema.js';

const root = new URL('../../../../', import.meta.url);
const read = (p: string): string => fs.readFileSync(new URL(p, root), 'utf8');
const readme = read('README.md');

describe('README', () => {
  for (const snippet of ['deploy/postfix/main.cf', 'deploy/sendmail/per-user-milter.mc']) {
    it(`shows ${snippet} verbatim`, () => {
      assert.ok(readme.includes(read(snippet).trimEnd()), `README.md must contain ${snippet} as it is`);
    });
  }

  it('documents every configuration key, and only real ones', () => {
    const documented = [...readme.matchAll(/^\| `([a-zA-Z.]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual(documented, leafKeys());
  });

  it('gives the two set-up commands, and package.json has the scripts they use', () => {
    assert.match(readme, /^npm ci && npm start /m);
    assert.match(readme, /^npm ci && npm test /m);
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string>; bin: Record<string, string> };
    for (const s of ['build', 'start', 'test', 'bench']) assert.ok(pkg.scripts[s], `script ${s}`);
    assert.equal(pkg.bin['per-user-milter'], 'dist/src/main.js');
  });

  it('.ci/run runs the README test command', () => {
    assert.match(read('.ci/run'), /^npm ci\b.*\nnpm test$/m);
  });
});
