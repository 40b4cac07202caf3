// References must lead somewhere: every document under docs/ that the
// sources, tests, bench, deploy files and docs name exists in the repository,
// and every citation of one with a section (`§N`, `§N.M`, `§4b`, and a
// following `, §M`) names a
// section of it: a heading `## N.` / `### N.M`, or item M of the numbered
// list in section N. Old names of documents that are not in the repository
// are refused outright.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const SEARCHED = ['src', 'workers', 'test', 'bench', 'docs', 'deploy', 'README.md'];
/** Recorded bench reports are history: they keep the words of their day. */
const SKIPPED = [path.join('bench', 'reports'), 'node_modules', 'dist'];
const TEXT = /\.(ts|mjs|js|md|json|ya?ml|cf|mc|sh|conf|service|example|lua)$|^[^.]+$/;

function files(rel: string): string[] {
  const abs = path.join(root, rel);
  if (!fs.existsSync(abs) || SKIPPED.some((s) => rel === s || rel.startsWith(s + path.sep))) return [];
  if (fs.statSync(abs).isFile()) return TEXT.test(path.basename(rel)) ? [rel] : [];
  return fs.readdirSync(abs).sort().flatMap((name) => files(path.join(rel, name)));
}

/** Section ids of a markdown file: headings, and N.M for item M of a numbered list in section N. */
function sections(markdown: string): Set<string> {
  const ids = new Set<string>();
  let current = '';
  for (const line of markdown.split('\n')) {
    const heading = /^#{2,4}\s+(\d+[a-z]?(?:\.\d+)*)\.?\s/.exec(line);
    if (heading) {
      current = heading[1] as string;
      ids.add(current);
      continue;
    }
    const item = /^(\d+)\.\s/.exec(line);
    if (item && current && !current.includes('.')) ids.add(`${current}.${item[1]}`);
  }
  return ids;
}

interface Citation {
  readonly file: string;
  readonly line: number;
  readonly doc: string;
  readonly section: string | undefined;
}

function citations(): Citation[] {
  const out: Citation[] = [];
  for (const file of SEARCHED.flatMap(files)) {
    const lines = fs.readFileSync(path.join(root, file), 'utf8').split('\n');
    lines.forEach((text, i) => {
      for (const m of text.matchAll(/docs\/([\w.-]+\.md)`?((?:(?:\s*,\s*|\s+and\s+|\s+)§[0-9][\w.]*)*)/g)) {
        const doc = `docs/${m[1]}`;
        const ids = [...(m[2] ?? '').matchAll(/§([0-9][0-9a-z]*(?:\.[0-9]+)*)/g)].map((x) => x[1] as string);
        if (ids.length === 0) out.push({ file, line: i + 1, doc, section: undefined });
        for (const id of ids) out.push({ file, line: i + 1, doc, section: id });
      }
    });
  }
  return out;
}

describe('citations of docs/', () => {
  const all = citations();

  it('finds the citations at all (the pattern still matches how the code cites)', () => {
    assert.ok(all.filter((c) => c.doc === 'docs/reference.md' && c.section).length >= 20, `only ${all.length} citations found`);
    assert.ok(all.some((c) => c.doc === 'docs/testing-with-real-mtas.md' && c.section === '6'));
  });

  it('every cited document exists', () => {
    const missing = all.filter((c) => !fs.existsSync(path.join(root, c.doc)));
    assert.deepEqual(missing.map((c) => `${c.file}:${c.line}: ${c.doc}`), []);
  });

  it('every cited section exists in its document', () => {
    const known = new Map<string, Set<string>>();
    const wrong: string[] = [];
    for (const c of all) {
      if (c.section === undefined || !fs.existsSync(path.join(root, c.doc))) continue;
      if (!known.has(c.doc)) known.set(c.doc, sections(fs.readFileSync(path.join(root, c.doc), 'utf8')));
      if (!known.get(c.doc)!.has(c.section)) wrong.push(`${c.file}:${c.line}: ${c.doc} §${c.section}`);
    }
    assert.deepEqual(wrong, []);
  });

  it('no reference to the old names of documents outside the repository', () => {
    const stale: string[] = [];
    for (const file of SEARCHED.flatMap(files)) {
      if (file === path.join('test', 'unit', 'docs', 'citations.test.ts')) continue;
      fs.readFileSync(path.join(root, file), 'utf8').split('\n').forEach((text, i) => {
        if (/\bcontract §|real-mta-testing|milter-protocol\.md\b/i.test(text)) stale.push(`${file}:${i + 1}: ${text.trim()}`);
      });
    }
    assert.deepEqual(stale, []);
  });

  it('reads sections as intended', () => {
    const ids = sections('## 4. A\n## 4b. B\n## 5. C\n1. one\n2. two\n### 6.3 D\n1. not an item of 6\n');
    assert.deepEqual([...ids].sort(), ['4', '4b', '5', '5.1', '5.2', '6.3']);
  });
});
