// Turns a BenchRun into the three outputs: a table for the terminal, a JSON
// file with every figure, and a Markdown report with an SVG chart (drawn
// here, no chart library) of throughput and p99 latency against recipients
// per message.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { BenchRun, ScenarioResult } from './results.js';
import { fmt, fmtRatio } from './stats.js';

function sizeLabel(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${Math.round(bytes / (1024 * 1024))} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} B`;
}

function mb(bytes: number | null): string {
  return bytes == null ? '-' : (bytes / (1024 * 1024)).toFixed(1);
}

function ms(seconds: number | null): string {
  return seconds == null ? '-' : fmt(seconds * 1000);
}

function ratioText(s: ScenarioResult): string {
  const parts = Object.entries(s.ratios)
    .filter(([, v]) => v != null)
    .map(([k, v]) => `${fmtRatio(v)} ${k}`);
  return parts.join('; ');
}

interface Column {
  head: string;
  cell: (s: ScenarioResult) => string;
  right?: boolean;
}

const COLUMNS: Column[] = [
  { head: 'scenario', cell: (s) => s.id },
  { head: 'msgs', cell: (s) => String(s.messages), right: true },
  { head: 'msg/s', cell: (s) => fmt(s.messagesPerSecond), right: true },
  { head: 'p50 ms', cell: (s) => fmt(s.latencyMs.p50), right: true },
  { head: 'p95 ms', cell: (s) => fmt(s.latencyMs.p95), right: true },
  { head: 'p99 ms', cell: (s) => fmt(s.latencyMs.p99), right: true },
  { head: 'CPU ms/msg', cell: (s) => ms(s.cpuSecondsPerMessage), right: true },
  { head: 'RSS MB', cell: (s) => mb(s.rssPeakBytes), right: true },
  { head: '+RSS MB', cell: (s) => mb(s.rssGrowthBytes), right: true },
  { head: 'rej/tmp/err', cell: (s) => `${s.rejects}/${s.tempfails}/${s.errors.length}`, right: true },
  { head: 'ratios (same run)', cell: ratioText },
];

export function terminalTable(run: BenchRun): string {
  const rows = run.scenarios.map((s) => COLUMNS.map((c) => c.cell(s)));
  const widths = COLUMNS.map((c, i) => Math.max(c.head.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((v, i) => (COLUMNS[i]?.right ? v.padStart(widths[i] ?? 0) : v.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  const out = [line(COLUMNS.map((c) => c.head)), widths.map((w) => '-'.repeat(w)).join('  ')];
  let layer = '';
  for (const [i, s] of run.scenarios.entries()) {
    if (s.layer !== layer && layer !== '') out.push('');
    layer = s.layer;
    out.push(line(rows[i] ?? []));
  }
  out.push('', 'Targets:');
  for (const t of run.targets) out.push(`  [${t.met === null ? ' ?  ' : t.met ? ' ok ' : 'MISS'}] ${t.name}: ${t.measured} (target ${t.target})`);
  if (run.skipped.length > 0) out.push('', 'Skipped:', ...run.skipped.map((s) => `  ${s}`));
  return out.join('\n');
}

function mdEscape(s: string): string {
  return s.replace(/\|/g, '\\|');
}

// ---- SVG chart ----------------------------------------------------------------

export interface Series {
  label: string;
  color: string;
  dash?: string;
  points: { x: number; y: number }[];
}

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** One panel: categorical x (recipients), linear y from 0, one polyline per series. */
function panel(x0: number, y0: number, w: number, h: number, title: string, yLabel: string, xs: number[], series: Series[]): string {
  const left = 56;
  const bottom = 36;
  const top = 28;
  const pw = w - left - 12;
  const ph = h - top - bottom;
  const ymax = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map((p) => p.y))));
  const xpos = (x: number): number => {
    const i = xs.indexOf(x);
    return x0 + left + (xs.length <= 1 ? pw / 2 : (i / (xs.length - 1)) * pw);
  };
  const ypos = (y: number): number => y0 + top + ph - (y / ymax) * ph;
  const parts: string[] = [];
  parts.push(`<text x="${x0 + w / 2}" y="${y0 + 16}" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`);
  for (let k = 0; k <= 5; k++) {
    const v = (ymax * k) / 5;
    const y = ypos(v);
    parts.push(`<line x1="${x0 + left}" y1="${y}" x2="${x0 + left + pw}" y2="${y}" stroke="#ddd"/>`);
    parts.push(`<text x="${x0 + left - 6}" y="${y + 4}" text-anchor="end" font-size="11">${esc(fmt(v))}</text>`);
  }
  for (const x of xs) {
    parts.push(`<line x1="${xpos(x)}" y1="${y0 + top}" x2="${xpos(x)}" y2="${y0 + top + ph}" stroke="#eee"/>`);
    parts.push(`<text x="${xpos(x)}" y="${y0 + top + ph + 16}" text-anchor="middle" font-size="11">${x}</text>`);
  }
  parts.push(`<line x1="${x0 + left}" y1="${y0 + top + ph}" x2="${x0 + left + pw}" y2="${y0 + top + ph}" stroke="#333"/>`);
  parts.push(`<line x1="${x0 + left}" y1="${y0 + top}" x2="${x0 + left}" y2="${y0 + top + ph}" stroke="#333"/>`);
  parts.push(`<text x="${x0 + left + pw / 2}" y="${y0 + h - 4}" text-anchor="middle" font-size="12">recipients per message</text>`);
  parts.push(`<text x="${x0 + 14}" y="${y0 + top + ph / 2}" text-anchor="middle" font-size="12" transform="rotate(-90 ${x0 + 14} ${y0 + top + ph / 2})">${esc(yLabel)}</text>`);
  for (const s of series) {
    const pts = s.points.filter((p) => xs.includes(p.x) && Number.isFinite(p.y));
    if (pts.length === 0) continue;
    const d = pts.map((p) => `${xpos(p.x).toFixed(1)},${ypos(p.y).toFixed(1)}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} points="${d}"/>`);
    for (const p of pts) parts.push(`<circle cx="${xpos(p.x).toFixed(1)}" cy="${ypos(p.y).toFixed(1)}" r="3.5" fill="${s.color}"/>`);
  }
  return parts.join('\n');
}

export function chartSvg(title: string, throughput: Series[], p99: Series[]): string {
  const xs = [...new Set([...throughput, ...p99].flatMap((s) => s.points.map((p) => p.x)))].sort((a, b) => a - b);
  const W = 900;
  const PH = 320;
  const labels = [...new Map([...throughput, ...p99].map((s) => [s.label, s])).values()];
  const legendH = 20 * Math.ceil(labels.length / 2) + 10;
  const H = 30 + PH + legendH;
  const legend = labels
    .map((s, i) => {
      const lx = 70 + (i % 2) * 420;
      const ly = 30 + PH + 16 + Math.floor(i / 2) * 20;
      return `<line x1="${lx}" y1="${ly - 4}" x2="${lx + 28}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/><circle cx="${lx + 14}" cy="${ly - 4}" r="3.5" fill="${s.color}"/><text x="${lx + 36}" y="${ly}" font-size="12">${esc(s.label)}</text>`;
    })
    .join('\n');
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${W / 2}" y="18" text-anchor="middle" font-size="15">${esc(title)}</text>
${panel(0, 26, W / 2, PH, 'Throughput (higher is better)', 'messages / s', xs, throughput)}
${panel(W / 2, 26, W / 2, PH, 'p99 latency (lower is better)', 'ms', xs, p99)}
${legend}
</svg>
`;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];

/** Series over recipients 1/3/10 for each (layer, system, sandbox) with 4 KB trivial-filter scenarios. */
export function recipientSeries(run: BenchRun): { throughput: Series[]; p99: Series[] } {
  const groups = new Map<string, ScenarioResult[]>();
  for (const s of run.scenarios) {
    if (!s.local || s.filter !== 'trivial' || s.size !== 4096 || s.layer === 'spawn') continue;
    const key = `${s.layer === 'smtp' ? 'SMTP via Postfix' : 'milter protocol'}: ${s.system}${s.sandbox ? ` (${s.sandbox})` : ''}`;
    const list = groups.get(key) ?? [];
    list.push(s);
    groups.set(key, list);
  }
  const throughput: Series[] = [];
  const p99: Series[] = [];
  [...groups.entries()].forEach(([label, list], i) => {
    const color = PALETTE[i % PALETTE.length] as string;
    const dash = label.startsWith('milter') ? '5,3' : undefined;
    const sorted = [...list].sort((a, b) => a.recipients - b.recipients);
    const base = { label, color, ...(dash ? { dash } : {}) };
    throughput.push({ ...base, points: sorted.map((s) => ({ x: s.recipients, y: s.messagesPerSecond })) });
    p99.push({ ...base, points: sorted.map((s) => ({ x: s.recipients, y: s.latencyMs.p99 })) });
  });
  return { throughput, p99 };
}

export function markdownReport(run: BenchRun, svgName: string): string {
  const out: string[] = [];
  out.push(`# per-user-milter benchmark — ${run.startedAt.slice(0, 10)}`, '');
  out.push(`Run ${run.startedAt} → ${run.finishedAt} (${run.durationSeconds.toFixed(0)} s).`, '');
  out.push('| machine | |', '|---|---|');
  for (const [k, v] of Object.entries(run.machine)) out.push(`| ${k} | ${mdEscape(v)} |`);
  const cores = Number(/× (\d+)/.exec(run.machine.cpu ?? '')?.[1] ?? '0');
  const load1 = Number((run.machine['load average at start'] ?? '').split(' ')[0]);
  if (cores > 0 && load1 > cores * 0.5) {
    out.push('', `> **Noisy run:** the 1-minute load average at start was ${load1.toFixed(1)} on ${cores} cores — other work shared the machine, so absolute figures are inflated and ratios between scenarios run at different moments are uncertain.`);
  }
  out.push('', `![throughput and p99 latency against recipients per message](${svgName})`, '');
  out.push('## Targets', '', '| | target | measured (same run) | met |', '|---|---|---|---|');
  for (const t of run.targets) out.push(`| ${mdEscape(t.name)} | ${mdEscape(t.target)} | ${mdEscape(t.measured)} | ${t.met === null ? 'n/a' : t.met ? 'yes' : '**no**'} |`);
  out.push('', '## All scenarios', '');
  out.push(
    'Latency: milter layer = EOM reply latency at the client; SMTP layer = Postfix `delays=a` (queue file opened at the first RCPT → DATA → milter verdict → queue manager); spawn layer = one filter run. CPU = the system under test\'s process tree (milter + its filter children, or both MIMEDefang daemons + workers), from /proc.',
    '',
  );
  out.push('| scenario | what | size | conc | msgs | msg/s | p50 ms | p95 ms | p99 ms | CPU ms/msg | peak RSS MB | RSS growth MB | rej/tmp/err | ratios against baselines |');
  out.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const s of run.scenarios) {
    out.push(
      `| \`${s.id}\` | ${mdEscape(s.title)} | ${sizeLabel(s.size)} | ${s.concurrency} | ${s.messages}${s.timedOut ? ' (time bound)' : ''} | ${fmt(s.messagesPerSecond)} | ${fmt(s.latencyMs.p50)} | ${fmt(s.latencyMs.p95)} | ${fmt(s.latencyMs.p99)} | ${ms(s.cpuSecondsPerMessage)} | ${mb(s.rssPeakBytes)} | ${mb(s.rssGrowthBytes)} | ${s.rejects}/${s.tempfails}/${s.errors.length} | ${mdEscape(ratioText(s))} |`,
    );
  }
  const withErrors = run.scenarios.filter((s) => s.errors.length > 0);
  if (withErrors.length > 0) {
    out.push('', '## Errors seen', '');
    for (const s of withErrors) for (const e of s.errors.slice(0, 3)) out.push(`- \`${s.id}\`: ${mdEscape(e.slice(0, 300))}`);
  }
  const notes = run.scenarios.filter((s) => (s.notes ?? []).length > 0);
  if (notes.length > 0) {
    out.push('', '## Notes', '');
    for (const s of notes) for (const n of s.notes ?? []) out.push(`- \`${s.id}\`: ${mdEscape(n)}`);
  }
  if (run.skipped.length > 0) out.push('', '## Skipped', '', ...run.skipped.map((s) => `- ${mdEscape(s)}`));
  out.push('', '## Settings', '', '```json', JSON.stringify(run.settings, null, 2), '```', '');
  return out.join('\n');
}

/** Writes results.json, report.md and chart.svg into dir; returns their paths. */
export function writeOutputs(run: BenchRun, dir: string): { json: string; markdown: string; svg: string } {
  mkdirSync(dir, { recursive: true });
  const json = path.join(dir, 'results.json');
  const markdown = path.join(dir, 'report.md');
  const svg = path.join(dir, 'chart.svg');
  writeFileSync(json, JSON.stringify(run, null, 2) + '\n');
  const series = recipientSeries(run);
  writeFileSync(svg, chartSvg(`per-user-milter vs MIMEDefang — 4 KB messages, trivial per-user filters (${run.startedAt.slice(0, 10)})`, series.throughput, series.p99));
  writeFileSync(markdown, markdownReport(run, path.basename(svg)));
  return { json, markdown, svg };
}

/** A short summary (targets + headline figures) for bench/README.md's "Recorded run" section. */
export function summaryMarkdown(run: BenchRun, reportDir: string): string {
  const out: string[] = [];
  out.push(`Run of ${run.startedAt.replace('T', ' ').slice(0, 16)} UTC, ${run.durationSeconds.toFixed(0)} s, commit ${run.machine.commit ?? '?'}: ${run.machine.cpu}, ${run.machine.memory}, ${run.machine.os}, Node ${run.machine.node}, Postfix ${run.machine.postfix}, MIMEDefang ${run.machine.mimedefang}. Load average at start ${run.machine['load average at start'] ?? '?'}, at end ${run.machine['load average at end'] ?? '?'}.`);
  out.push('', `Full report: [${reportDir}/report.md](${reportDir}/report.md) (every scenario, all ratios), figures: [${reportDir}/results.json](${reportDir}/results.json).`, '');
  out.push(`![throughput and p99 latency against recipients per message](${reportDir}/chart.svg)`, '');
  out.push('| target | measured (same run) | met |', '|---|---|---|');
  for (const t of run.targets) out.push(`| ${mdEscape(t.name)}: ${mdEscape(t.target)} | ${mdEscape(t.measured)} | ${t.met === null ? 'n/a' : t.met ? 'yes' : '**no**'} |`);
  out.push('', '| scenario | msg/s | p50 ms | p99 ms | CPU ms/msg | peak RSS MB | ratios |', '|---|---|---|---|---|---|---|');
  for (const s of run.scenarios) {
    out.push(`| \`${s.id}\` | ${fmt(s.messagesPerSecond)} | ${fmt(s.latencyMs.p50)} | ${fmt(s.latencyMs.p99)} | ${ms(s.cpuSecondsPerMessage)} | ${mb(s.rssPeakBytes)} | ${mdEscape(ratioText(s))} |`);
  }
  return out.join('\n') + '\n';
}
