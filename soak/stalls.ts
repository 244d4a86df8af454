/**
 * Event-loop stalls, to judge time limits fairly. The soak runs the client, the gateway and every mock in
 * one process, often on a loaded machine: while the loop is stalled nobody (the gateway included) can
 * react, so "the upstream closed within 100 ms of the abort" is measured net of the stalls in between.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

const TICK_MS = 5;
/** Ten seconds of ticks: abort checks look back at most a few hundred ms. */
const KEPT_TICKS = 2000;

export interface StallSummary {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export class LoopStalls {
  private readonly at = new Float64Array(KEPT_TICKS);
  private readonly late = new Float64Array(KEPT_TICKS);
  private next = 0;
  private readonly histogram = monitorEventLoopDelay({ resolution: 10 });
  private readonly timer: NodeJS.Timeout;

  constructor() {
    let expected = Date.now() + TICK_MS;
    this.timer = setInterval(() => {
      const now = Date.now();
      this.at[this.next % KEPT_TICKS] = now;
      this.late[this.next % KEPT_TICKS] = Math.max(0, now - expected);
      this.next++;
      expected = now + TICK_MS;
    }, TICK_MS);
    this.histogram.enable();
  }

  /** Milliseconds within [from, to] during which the loop was stalled (a late tick covers [at − late, at]). */
  stalledBetween(from: number, to: number): number {
    let stalled = 0;
    for (let i = Math.max(0, this.next - KEPT_TICKS); i < this.next; i++) {
      const at = this.at[i % KEPT_TICKS]!;
      const overlap = Math.min(at, to) - Math.max(at - this.late[i % KEPT_TICKS]!, from);
      if (overlap > 0) stalled += overlap;
    }
    return stalled;
  }

  summary(): StallSummary {
    const ms = (ns: number): number => Math.round(ns / 1e6);
    return { p50Ms: ms(this.histogram.percentile(50)), p99Ms: ms(this.histogram.percentile(99)), maxMs: ms(this.histogram.max) };
  }

  stop(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }
}
