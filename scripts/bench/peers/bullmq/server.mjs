// The seed design's publish path, as a peer of the ingest: POST /v1/events takes one event
// `{type, data, ...}` or an array of them (the ingest's batch body) and answers 202 once BullMQ has
// the job(s) in Redis: `queue.add(type, event, opts)` for one, `queue.addBulk` for an array, with the
// seed's retry options on every job. No framework, Node's own http module.
//
// Bounded like the ingest: at most MAX_IN_FLIGHT requests at once (past it: 503 at once, no
// queueing), bodies of at most MAX_BODY_BYTES (413), batches of at most MAX_BATCH events (413).
// No token check and no schema validation: it measures the queue, not an API's checks.
//
// Environment (defaults):
//   LISTEN=127.0.0.1:0          address to bind (port 0: any free port, printed on stdout)
//   REDIS_URL=redis://127.0.0.1:6379
//   QUEUE=events                BullMQ queue name
//   MAX_IN_FLIGHT=1024          requests handled at once (the ingest's CIRC_INGEST_MAX_CONCURRENCY)
//   MAX_BODY_BYTES=1048576      largest body (the ingest's CIRC_INGEST_MAX_BODY_BYTES)
//   MAX_BATCH=500               most events per request (the ingest's CIRC_INGEST_MAX_BATCH)
import http from 'node:http';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';

const JOB_OPTIONS = { attempts: 5, backoff: { type: 'exponential', delay: 2000 } };

const env = process.env;
const [host, port] = (env.LISTEN ?? '127.0.0.1:0').split(':');
const maxInFlight = Number(env.MAX_IN_FLIGHT ?? 1024);
const maxBody = Number(env.MAX_BODY_BYTES ?? 1024 * 1024);
const maxBatch = Number(env.MAX_BATCH ?? 500);

const redis = new Redis(env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });
const queue = new Queue(env.QUEUE ?? 'events', { connection: redis });
let inFlight = 0;

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function send(res, status, doc) {
  const body = JSON.stringify(doc);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

// The body, refused with 413 as soon as it passes maxBody (the rest is not buffered).
function readBody(req) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxBody) return reject(new HttpError(413, `body over ${maxBody} bytes`));
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > maxBody) {
        req.removeAllListeners('data');
        req.resume();
        reject(new HttpError(413, `body over ${maxBody} bytes`));
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function checkEvent(event) {
  if (event === null || typeof event !== 'object' || typeof event.type !== 'string' || !event.type) {
    throw new HttpError(400, 'an event needs a string `type`');
  }
  return event;
}

async function publish(req, res) {
  let doc;
  try {
    doc = JSON.parse(await readBody(req));
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new HttpError(400, 'the body is not valid JSON');
  }
  if (Array.isArray(doc)) {
    if (doc.length === 0 || doc.length > maxBatch) throw new HttpError(413, `a batch holds 1 to ${maxBatch} events`);
    const jobs = doc.map((event) => ({ name: checkEvent(event).type, data: event, opts: JOB_OPTIONS }));
    const added = await queue.addBulk(jobs);
    return send(res, 202, added.map((job) => ({ id: job.id })));
  }
  const event = checkEvent(doc);
  const job = await queue.add(event.type, event, JOB_OPTIONS);
  return send(res, 202, { id: job.id });
}

async function ready(res) {
  await redis.ping();
  send(res, 200, { status: 'ready' });
}

async function route(req, res) {
  const path = req.url.split('?')[0];
  if (path === '/readyz' || path === '/healthz') return ready(res);
  if (path !== '/v1/events') throw new HttpError(404, 'not found');
  if (req.method !== 'POST') throw new HttpError(405, 'POST only');
  if (inFlight >= maxInFlight) throw new HttpError(503, 'overloaded; retry later');
  inFlight += 1;
  try {
    return await publish(req, res);
  } finally {
    inFlight -= 1;
  }
}

const server = http.createServer((req, res) => {
  route(req, res).catch((error) => {
    const status = error instanceof HttpError ? error.status : 503;
    if (!res.headersSent) send(res, status, { status, detail: error.message });
  });
});
server.keepAliveTimeout = 75_000;

server.listen(Number(port), host, () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ listen: `${address.address}:${address.port}` })}\n`);
});

async function stop() {
  server.close();
  await queue.close();
  redis.disconnect();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
