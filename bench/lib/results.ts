// The shape of every figure the benchmark records (one ScenarioResult per
// scenario), shared by the runners, the report and the smoke test.
import type { LatencySummary } from './stats.js';

export type Layer = 'milter' | 'smtp' | 'spawn';
export type System = 'per-user-milter' | 'null-milter' | 'postfix-only' | 'mimedefang' | 'spawn-loop' | 'pool';
export type FilterKindOrNone = 'none' | 'trivial' | 'slow';

export interface ScenarioResult {
  /** Stable id, e.g. "smtp/pum-setpriv/r3/4k/trivial". */
  id: string;
  title: string;
  layer: Layer;
  system: System;
  sandbox: 'setpriv' | 'bwrap' | 'fork-exec' | 'none' | 'sudo' | null;
  /** Envelope recipients per message. */
  recipients: number;
  /** Whether the recipients are local users with a filter (false: pass-through). */
  local: boolean;
  filter: FilterKindOrNone;
  /** Message body size in bytes. */
  size: number;
  /** Parallel connections / SMTP sessions / spawn concurrency. */
  concurrency: number;
  /** Messages (or filter runs, for spawn scenarios) completed and measured. */
  messages: number;
  elapsedSeconds: number;
  messagesPerSecond: number;
  /** Milliseconds. Milter layer: EOM reply latency; SMTP layer: Postfix delays=a; spawn: one run. */
  latencyMs: LatencySummary;
  /** Milter layer: whole-transaction latency (connect to quit). */
  transactionLatencyMs?: LatencySummary;
  /** CPU seconds of the system under test (milter process tree) per message. */
  cpuSecondsPerMessage: number | null;
  /** CPU seconds of the whole machine (all processes, load generator included) per message. */
  machineCpuSecondsPerMessage: number | null;
  /** CPU seconds of the Postfix process tree per message (SMTP layer). */
  postfixCpuSecondsPerMessage?: number | null;
  rssStartBytes: number | null;
  rssPeakBytes: number | null;
  rssGrowthBytes: number | null;
  rejects: number;
  tempfails: number;
  errors: string[];
  /** The run hit its time bound before its message count. */
  timedOut: boolean;
  /** Ratios against the baselines of the same run, by name (e.g. "vs null-milter msg/s"). */
  ratios: Record<string, number | null>;
  notes?: string[];
}

export interface TargetCheck {
  name: string;
  target: string;
  measured: string;
  met: boolean | null;
}

export interface BenchRun {
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  machine: Record<string, string>;
  settings: Record<string, unknown>;
  scenarios: ScenarioResult[];
  targets: TargetCheck[];
  skipped: string[];
}
