// Runs in: the soak (pure).
//
// The soak's trends and its chart: growth of memory and descriptors after
// warm-up, per part (milter, runner, launcher), and an SVG of the samples
// (drawn here, like bench/lib/report.ts, no chart library).
import type { Sample } from './engine.js';

export type Part = 'milter' | 'runner' | 'launcher';
export const PARTS: readonly Part[] = ['milter', 'runner', 'launcher'];

export interface Trend {
  part: Part;
  /** Median of the first and last quarter of the samples after warm-up. */
  rssStartMb: number;
  rssEndMb: number;
  fdsStart: number;
  fdsEnd: number;
  threadsStart: number;
  threadsEnd: number;
  /** Least-squares slope after warm-up, per 10,000 messages. */
  rssMbPer10k: number;
  fdsPer10k: number;
}

function median(v: number[]): number {
  if (v.length === 0) return 0;
  const s = [...v].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** Samples after warm-up: those taken once `warmup` messages had finished (at least the last 4). */
export function afterWarmup(samples: readonly Sample[], warmup: number): Sample[] {
  const s = samples.filter((x) => x.done >= warmup);
  return s.length >= 4 ? s : samples.slice(-4);
}

export function trends(samples: readonly Sample[], warmup: number): Trend[] {
  const s = afterWarmup(samples, warmup);
  const q = Math.max(1, Math.floor(s.length / 4));
  const head = s.slice(0, q);
  const tail = s.slice(-q);
  const MB = 1024 * 1024;
  return PARTS.map((part) => {
    const val = (x: Sample, f: 'rss' | 'fds' | 'threads') => x[part]?.[f] ?? NaN;
    const med = (set: Sample[], f: 'rss' | 'fds' | 'threads') => median(set.map((x) => val(x, f)).filter(Number.isFinite));
    const known = s.filter((x) => x[part] !== null);
    return {
      part,
      rssStartMb: med(head, 'rss') / MB,
      rssEndMb: med(tail, 'rss') / MB,
      fdsStart: med(head, 'fds'),
      fdsEnd: med(tail, 'fds'),
      threadsStart: med(head, 'threads'),
      threadsEnd: med(tail, 'threads'),
      rssMbPer10k: (slope(known.map((x) => x.done), known.map((x) => val(x, 'rss') / MB)) * 10_000),
      fdsPer10k: slope(known.map((x) => x.done), known.map((x) => val(x, 'fds'))) * 10_000,
    };
  });
}

// ---- chart ----------------------------------------------------------------

interface Line {
  label: string;
  color: string;
  points: { x: number; y: number }[];
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function nice(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function panel(y0: number, w: number, h: number, title: string, xmax: number, lines: Line[], warmup: number): string {
  const left = 60;
  const top = 26;
  const bottom = 30;
  const pw = w - left - 150;
  const ph = h - top - bottom;
  const ymax = nice(Math.max(0, ...lines.flatMap((l) => l.points.map((p) => p.y))) * 1.1);
  const X = (x: number) => left + (xmax > 0 ? (x / xmax) * pw : 0);
  const Y = (y: number) => y0 + top + ph - (y / ymax) * ph;
  const out: string[] = [`<text x="${left + pw / 2}" y="${y0 + 16}" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`];
  for (let k = 0; k <= 4; k++) {
    const v = (ymax * k) / 4;
    out.push(`<line x1="${left}" y1="${Y(v)}" x2="${left + pw}" y2="${Y(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${left - 6}" y="${Y(v) + 4}" text-anchor="end" font-size="11">${Number(v.toPrecision(3))}</text>`);
  }
  for (let k = 0; k <= 5; k++) {
    const x = (xmax * k) / 5;
    out.push(`<text x="${X(x)}" y="${y0 + top + ph + 16}" text-anchor="middle" font-size="11">${Math.round(x)}</text>`);
  }
  if (warmup > 0 && warmup < xmax) out.push(`<line x1="${X(warmup)}" y1="${y0 + top}" x2="${X(warmup)}" y2="${y0 + top + ph}" stroke="#999" stroke-dasharray="4 3"/>`);
  out.push(`<rect x="${left}" y="${y0 + top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  lines.forEach((l, i) => {
    if (l.points.length === 0) return;
    out.push(`<polyline fill="none" stroke="${l.color}" stroke-width="1.5" points="${l.points.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ')}"/>`);
    out.push(`<rect x="${left + pw + 14}" y="${y0 + top + 4 + i * 18}" width="12" height="3" fill="${l.color}"/>`);
    out.push(`<text x="${left + pw + 32}" y="${y0 + top + 9 + i * 18}" font-size="12">${esc(l.label)}</text>`);
  });
  return out.join('\n');
}

const COLORS: Record<Part, string> = { milter: '#1f77b4', runner: '#d62728', launcher: '#2ca02c' };

/** Three panels against messages finished: RSS, descriptors, threads and processes. */
export function soakChart(samples: readonly Sample[], warmup: number, title: string): string {
  const W = 860;
  const H = 230;
  const xmax = Math.max(1, ...samples.map((s) => s.done));
  const series = (f: (s: Sample) => number | null, label: string, color: string): Line => ({
    label,
    color,
    points: samples.flatMap((s) => {
      const y = f(s);
      return y === null || !Number.isFinite(y) ? [] : [{ x: s.done, y }];
    }),
  });
  const rss = PARTS.map((p) => series((s) => (s[p] ? s[p]!.rss / 1048576 : null), `${p} RSS MB`, COLORS[p]));
  const fds = PARTS.map((p) => series((s) => s[p]?.fds ?? null, `${p} fds`, COLORS[p]));
  const procs = [
    ...PARTS.map((p) => series((s) => s[p]?.threads ?? null, `${p} threads`, COLORS[p])),
    series((s) => s.userProcs, 'user processes', '#9467bd'),
    series((s) => s.spoolFiles, 'spool files', '#8c564b'),
  ];
  const body = [
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
    panel(28, W, H, 'resident memory (MB) by messages finished', xmax, rss, warmup),
    panel(28 + H, W, H, 'open descriptors', xmax, fds, warmup),
    panel(28 + 2 * H, W, H, 'threads, filter processes, spool files', xmax, procs, warmup),
  ];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${28 + 3 * H + 10}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${body.join('\n')}\n</svg>\n`;
}
