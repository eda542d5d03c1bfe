// Pre-fills the queue for a worker drain measurement: COUNT jobs, each an event of the file EVENTS
// (one JSON event a line, used in turn), added with queue.addBulk in chunks of CHUNK and the same
// job options as the HTTP service. Prints one JSON line when all are in Redis.
//
// Environment (defaults): REDIS_URL=redis://127.0.0.1:6379 QUEUE=events COUNT=100000 CHUNK=500 EVENTS
import { readFileSync } from 'node:fs';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

const JOB_OPTIONS = { attempts: 5, backoff: { type: 'exponential', delay: 2000 } };

const env = process.env;
const count = Number(env.COUNT ?? 100_000);
const chunk = Number(env.CHUNK ?? 500);
const events = readFileSync(env.EVENTS, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
const connection = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
const queue = new Queue(env.QUEUE ?? 'events', { connection });

const started = process.hrtime.bigint();
for (let added = 0; added < count; added += chunk) {
  const jobs = [];
  for (let i = added; i < Math.min(count, added + chunk); i += 1) {
    const event = events[i % events.length];
    jobs.push({ name: event.type, data: event, opts: JOB_OPTIONS });
  }
  await queue.addBulk(jobs);
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const waiting = await queue.getWaitingCount();
process.stdout.write(`${JSON.stringify({ added: count, waiting, seconds: Number(seconds.toFixed(3)) })}\n`);
await queue.close();
connection.disconnect();
