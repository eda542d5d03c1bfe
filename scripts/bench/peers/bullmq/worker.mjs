// The seed design's consumer side: a BullMQ worker with a no-op processor (concurrency 50 by
// default). With DRAIN=N it times how long it takes to complete N jobs already in the queue, prints
// one JSON line (with the worker's own CPU time over the drain) and exits; without it, it runs until
// SIGTERM.
//
// Environment (defaults):
//   REDIS_URL=redis://127.0.0.1:6379
//   QUEUE=events
//   CONCURRENCY=50
//   DRAIN=                     jobs to complete before printing the figure and exiting
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';

const env = process.env;
const drain = Number(env.DRAIN ?? 0);
const connection = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });

const started = process.hrtime.bigint();
const cpuAtStart = process.cpuUsage();
let first = null;
let done = 0;

const worker = new Worker(env.QUEUE ?? 'events', async () => {}, {
  connection,
  concurrency: Number(env.CONCURRENCY ?? 50),
});

function seconds(from, to) {
  return Number(to - from) / 1e9;
}

async function finish() {
  const now = process.hrtime.bigint();
  const total = seconds(started, now);
  const steady = first === null ? 0 : seconds(first, now);
  const cpu = process.cpuUsage(cpuAtStart);
  process.stdout.write(`${JSON.stringify({
    jobs: done,
    seconds: Number(total.toFixed(3)),
    jobs_per_s: Number((done / total).toFixed(1)),
    jobs_per_s_after_first: steady > 0 ? Number(((done - 1) / steady).toFixed(1)) : null,
    first_completed_s: first === null ? null : Number(seconds(started, first).toFixed(3)),
    worker_cpu_us: cpu.user + cpu.system,
  })}\n`);
  await worker.close();
  connection.disconnect();
  process.exit(0);
}

worker.on('completed', () => {
  done += 1;
  if (first === null) first = process.hrtime.bigint();
  if (drain > 0 && done === drain) finish();
});
worker.on('error', (error) => process.stderr.write(`worker: ${error.message}\n`));

async function stop() {
  await worker.close();
  connection.disconnect();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
