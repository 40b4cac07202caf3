// The import rules of docs/design.md ("Layers"), enforced. Every .ts file
// under src/ and workers/ belongs to an area; each area may import the
// areas its arrow names (values and types), some more for types only (they
// are erased at build time, so no code of theirs runs here), node:
// built-ins when it says so, and the npm packages it names. src/errors.ts and
// src/timeouts.ts are leaves anyone may import; they import nothing. A file
// in no area, or an import against the arrows, fails with the file and the
// import named. The arrows are data here and drawn in docs/design.md, and the
// drawing must be the one rendered from this data.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('../../../', import.meta.url));

interface Arrow {
  /** Areas or files whose values it may import. */
  readonly imports: readonly string[] | 'anything';
  /** Areas or files it may import types from, and nothing else. */
  readonly types?: readonly string[];
  /** May it import node: built-ins? */
  readonly node: boolean;
  /** npm packages it may import. */
  readonly packages?: readonly string[];
  /** Why, in a few words: shown in the drawing. */
  readonly why: string;
}

/** Anyone may import these; they import nothing. */
const LEAVES = ['src/errors.ts', 'src/timeouts.ts'];

/** The arrows, most specific area first (a file belongs to the first area its path starts with). */
const ARROWS: ReadonlyArray<readonly [area: string, arrow: Arrow]> = [
  ['src/main.ts', { imports: ['src/cli/'], node: true, why: 'the executable: dispatches to a command' }],
  ['src/cli/', { imports: 'anything', node: true, why: 'composition roots: serve wires everything' }],
  ['src/config/', { imports: ['src/milter/socket-spec.ts', 'src/metrics/listen.ts'], node: true, packages: ['convict', 'jsonc-parser'], why: 'schema and loader (socket values checked by the parsers that use them)' }],
  ['src/milter/client.ts', { imports: ['src/milter/'], node: true, why: 'the MTA side, for tests and the bench' }],
  ['src/milter/', { imports: [], node: false, why: 'the protocol engine: pure, nothing outside itself' }],
  ['src/server/', { imports: ['src/milter/'], node: true, why: 'sockets and connections around the engine' }],
  [
    'src/app/',
    {
      imports: ['src/milter/', 'src/recipients/', 'src/spool/', 'src/policy/', 'src/runner/'],
      types: ['src/config/', 'src/filter/job.ts', 'src/users/'],
      node: false,
      why: 'one connection of per-user-milter: envelope, spool, verdict',
    },
  ],
  ['src/recipients/', { imports: ['src/users/'], types: ['src/config/'], node: true, packages: ['execa'], why: 'RCPT → local user or not; alias tables through postmap' }],
  ['src/users/', { imports: [], node: true, why: 'NSS or passwd-file lookups' }],
  ['src/spool/', { imports: [], node: true, why: 'the message on disk' }],
  ['src/policy/', { imports: ['src/milter/replies.ts', 'src/recipients/address.ts'], types: ['src/config/', 'src/filter/job.ts'], node: false, why: 'verdicts: pure functions (SMTP reply rules from the engine, the address parser)' }],
  ['src/filter/', { imports: ['src/launcher/'], types: ['src/config/', 'src/users/'], node: true, packages: ['execa'], why: 'one filter run, through the launcher; the privilege split' }],
  ['src/runner/', { imports: ['src/filter/'], node: true, packages: ['piscina'], why: 'milter end and pool of the runner process' }],
  ['src/launcher/', { imports: [], node: true, packages: ['execa'], why: "the native launcher's wrapper: its wire protocol, a connection, its start" }],
  ['src/metrics/', { imports: ['src/filter/job.ts'], node: true, packages: ['prom-client'], why: 'counters and /metrics' }],
  ['src/log/', { imports: [], node: true, packages: ['pino'], why: 'the process logger (node:fs: is stderr the journal?)' }],
  ['workers/', { imports: ['src/filter/', 'src/runner/'], node: true, why: 'runner process and worker threads: never the milter side' }],
];

function areaOf(file: string): string | undefined {
  return ARROWS.find(([area]) => file === area || (area.endsWith('/') && file.startsWith(area)))?.[0];
}

const within = (file: string, targets: readonly string[]): boolean => targets.some((t) => file === t || (t.endsWith('/') && file.startsWith(t)));

interface Import {
  readonly from: string;
  readonly specifier: string;
  /** Only types are imported (erased by the compiler). */
  readonly typeOnly: boolean;
  readonly line: number;
}

function importsOf(file: string): Import[] {
  const text = fs.readFileSync(path.join(root, file), 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: Import[] = [];
  const add = (node: ts.Node, specifier: ts.Expression | undefined, typeOnly: boolean): void => {
    if (!specifier || !ts.isStringLiteral(specifier)) return;
    out.push({ from: file, specifier: specifier.text, typeOnly, line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const named = clause?.namedBindings && ts.isNamedImports(clause.namedBindings) ? clause.namedBindings.elements : undefined;
      const allTypes = !!clause && !clause.name && !!named && named.length > 0 && named.every((e) => e.isTypeOnly);
      add(node, node.moduleSpecifier, !!clause?.isTypeOnly || allTypes);
    } else if (ts.isExportDeclaration(node)) {
      add(node, node.moduleSpecifier, node.isTypeOnly);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node, node.arguments[0], false);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node, node.argument.literal as ts.Expression, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return out;
}

/** '../milter/session.js' from src/server/x.ts -> src/milter/session.ts */
function resolve(from: string, specifier: string): string {
  return path.posix.normalize(path.posix.join(path.posix.dirname(from), specifier)).replace(/\.js$/, '.ts');
}

/** What is wrong with one import, or undefined. */
function violation(i: Import): string | undefined {
  const where = `${i.from}:${i.line} imports '${i.specifier}'`;
  if (LEAVES.includes(i.from)) return `${where}: ${i.from} is a leaf and imports nothing`;
  const area = areaOf(i.from);
  if (!area) return `${where}: ${i.from} is in no area of the arrows`;
  const arrow = ARROWS.find(([a]) => a === area)![1];
  if (i.specifier.startsWith('node:')) return arrow.node ? undefined : `${where}: ${area} may not use node: built-ins`;
  if (!i.specifier.startsWith('.')) {
    const pkg = i.specifier.startsWith('@') ? i.specifier.split('/').slice(0, 2).join('/') : (i.specifier.split('/')[0] as string);
    return (arrow.packages ?? []).includes(pkg) ? undefined : `${where}: ${area} may not import the package ${pkg}`;
  }
  const target = resolve(i.from, i.specifier);
  if (LEAVES.includes(target) || areaOf(target) === area) return undefined;
  if (arrow.imports === 'anything' || within(target, arrow.imports)) return undefined;
  if (i.typeOnly && within(target, arrow.types ?? [])) return undefined;
  const allowed = arrow.imports.length === 0 ? 'nothing outside itself' : arrow.imports.join(', ');
  const types = arrow.types?.length ? `; types only from ${arrow.types.join(', ')}` : '';
  return `${where} (${target}): ${area} may import ${allowed}${types}, and the leaves`;
}

function sources(dir: string): string[] {
  const abs = path.join(root, dir);
  if (!fs.existsSync(abs)) return [];
  return fs
    .readdirSync(abs, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? sources(path.posix.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.posix.join(dir, e.name)] : []));
}

/** The drawing in docs/design.md: one table row per area. */
function drawing(): string {
  const code = (xs: readonly string[]): string => (xs.length === 0 ? '-' : xs.map((x) => `\`${x}\``).join(' '));
  const rows = ARROWS.map(([area, a]) => {
    const values = a.imports === 'anything' ? 'anything' : a.imports.length === 0 ? 'nothing outside itself' : code(a.imports);
    const other = [...(a.packages ?? []), ...(a.node ? ['node:'] : [])];
    return `| \`${area}\` | ${values} | ${code(a.types ?? [])} | ${code(other)} | ${a.why} |`;
  });
  return [
    '| area | may import | types only from | npm, node: | what it is |',
    '|---|---|---|---|---|',
    ...rows,
    `| ${LEAVES.map((l) => `\`${l}\``).join(' ')} | nothing | - | - | leaves: every area may import them |`,
  ].join('\n');
}

describe('layering (docs/design.md, Layers)', () => {
  const files = [...sources('src'), ...sources('workers')];

  it('finds the sources', () => {
    assert.ok(files.includes('src/milter/session.ts') && files.includes('workers/runner-process.ts'), files.join(' '));
  });

  it('every source file belongs to an area', () => {
    const lost = files.filter((f) => !areaOf(f) && !LEAVES.includes(f));
    assert.deepEqual(lost, [], 'add the area to ARROWS in this test and to the drawing in docs/design.md');
  });

  it('every import follows the arrows', () => {
    const wrong = files.flatMap(importsOf).map(violation).filter((v): v is string => v !== undefined);
    assert.deepEqual(wrong, []);
  });

  it('catches what it should (the rules themselves)', () => {
    const probe = (from: string, specifier: string, typeOnly = false): string | undefined => violation({ from, specifier, typeOnly, line: 1 });
    assert.match(probe('src/milter/session.ts', '../app/index.js') ?? '', /src\/milter\/session\.ts:1 imports '\.\.\/app\/index\.js' \(src\/app\/index\.ts\)/);
    assert.match(probe('src/milter/frame.ts', 'node:net') ?? '', /node: built-ins/);
    assert.match(probe('workers/filter-worker.ts', '../src/server/connection.js') ?? '', /workers\/ may import/);
    assert.match(probe('src/policy/aggregate.ts', '../filter/run.js', true) ?? '', /types only from/);
    assert.match(probe('src/policy/aggregate.ts', '../filter/job.js') ?? '', /policy/, 'values from a types-only area');
    assert.match(probe('src/policy/reply.ts', '../milter/session.js') ?? '', /policy/, 'one file of an area, not the area');
    assert.match(probe('src/launcher/index.ts', '../filter/run.js') ?? '', /launcher/);
    assert.match(probe('src/errors.ts', './timeouts.js') ?? '', /leaf/);
    assert.match(probe('src/server/x.ts', 'piscina') ?? '', /package piscina/);
    assert.equal(probe('src/policy/aggregate.ts', '../filter/job.js', true), undefined);
    assert.equal(probe('src/launcher/index.ts', '../errors.js'), undefined);
    assert.equal(probe('src/server/connection.ts', '../milter/session.js'), undefined);
  });

  it('docs/design.md draws these arrows', () => {
    const design = fs.readFileSync(path.join(root, 'docs/design.md'), 'utf8');
    assert.ok(design.includes(drawing()), `docs/design.md must contain, verbatim:\n${drawing()}`);
  });
});
