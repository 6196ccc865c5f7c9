'use strict';
// What every example shares: the protos, the channel, the API key, retries and exit codes.
//
// Settings come from the environment, as the numguard CLI reads them:
//   NUMGUARD_SERVER   host:port, or https://host:port for TLS (default 127.0.0.1:50051)
//   NUMGUARD_API_KEY  the key, sent as `authorization: Bearer <key>` (not needed with serve --dev)
//   NUMGUARD_CA_CERT  PEM file of the CA that signed the server's certificate (TLS only)

const fs = require('node:fs');
const path = require('node:path');
const { once } = require('node:events');
const grpc = require('@grpc/grpc-js');
const { parse } = require('csv-parse');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = path.join(__dirname, '..', '..', 'proto');
const definition = protoLoader.loadSync(
  ['numguard/v1/check.proto', 'numguard/v1/events.proto', 'numguard/v1/alerts.proto'],
  // uint64 cursors and counts as strings: a JavaScript number loses digits past 2^53.
  { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
);
const numguard = grpc.loadPackageDefinition(definition).numguard.v1;

// Unary calls are retried by gRPC itself when the server is briefly unreachable. Streams
// are retried by each program, which knows what is safe to send again.
const SERVICE_CONFIG = {
  methodConfig: [
    {
      name: [{ service: 'numguard.v1.NumberCheck', method: 'CheckNumber' }],
      retryPolicy: {
        maxAttempts: 4,
        initialBackoff: '0.2s',
        maxBackoff: '2s',
        backoffMultiplier: 2,
        retryableStatusCodes: ['UNAVAILABLE'],
      },
    },
  ],
};

// Codes worth another try after a pause: the server is away, busy or rate-limiting.
const RETRYABLE = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.DEADLINE_EXCEEDED,
]);

// Exit codes a script can tell apart.
const EXIT = { OK: 0, REFUSED: 1, USAGE: 2, AUTH: 3, UNAVAILABLE: 4 };

function channelArgs() {
  const server = process.env.NUMGUARD_SERVER || '127.0.0.1:50051';
  const options = {
    'grpc.service_config': JSON.stringify(SERVICE_CONFIG),
    // Notice a dead connection on a long-lived stream (WatchAlerts) within a minute.
    'grpc.keepalive_time_ms': 30000,
    'grpc.keepalive_timeout_ms': 10000,
  };
  if (server.startsWith('https://')) {
    const ca = process.env.NUMGUARD_CA_CERT ? fs.readFileSync(process.env.NUMGUARD_CA_CERT) : null;
    return [server.slice('https://'.length), grpc.credentials.createSsl(ca), options];
  }
  return [server.replace(/^http:\/\//, ''), grpc.credentials.createInsecure(), options];
}

/** A client for one numguard service, e.g. `client('NumberCheck')`. */
function client(service) {
  return new numguard[service](...channelArgs());
}

function metadata() {
  const md = new grpc.Metadata();
  if (process.env.NUMGUARD_API_KEY) md.set('authorization', `Bearer ${process.env.NUMGUARD_API_KEY}`);
  return md;
}

/** Milliseconds to wait before try `attempt` (1, 2, ...): exponential, capped, jittered. */
function backoff(attempt, capMs = 10000) {
  return Math.random() * Math.min(capMs, 250 * 2 ** attempt);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function exitCode(error) {
  if (error.code === grpc.status.UNAUTHENTICATED || error.code === grpc.status.PERMISSION_DENIED) return EXIT.AUTH;
  if (RETRYABLE.has(error.code)) return EXIT.UNAVAILABLE;
  return EXIT.REFUSED;
}

/** Reports a final error on stderr and returns the exit code for it. */
function fail(error) {
  console.error(`error: ${grpc.status[error.code] ?? error.code}: ${error.details ?? error.message}`);
  return exitCode(error);
}

async function sleepBeforeRetry(attempt, error) {
  const pause = backoff(attempt);
  console.error(`${grpc.status[error.code]}: ${error.details}; retrying in ${(pause / 1000).toFixed(1)}s`);
  await sleep(pause);
}

/**
 * Writes one message per record of the CSV `file` to a client stream, then ends it.
 * `toMessage(record, line)` gives the message, or null to skip the record. Waits whenever
 * gRPC's buffer is full (flow control: the server has not taken more yet) and stops if
 * `ended` (settled when the call is over) comes first. A file error cancels the call.
 */
async function streamCsv(call, ended, file, toMessage) {
  let over = false;
  ended.then(() => { over = true; });
  try {
    const rows = fs.createReadStream(file).pipe(parse({ columns: true, skip_empty_lines: true, info: true }));
    for await (const { record, info } of rows) {
      if (over) return;
      const message = toMessage(record, info.lines);
      if (message === null) continue;
      if (!call.write(message)) await Promise.race([once(call, 'drain'), ended]);
    }
    call.end();
  } catch (error) {
    call.cancel();
    await ended;
    throw error;
  }
}

/** Runs `main` and exits with the code it returns. */
function run(main) {
  main().then(
    (code) => process.exit(code),
    (error) => {
      console.error(`error: ${error.message}`);
      process.exit(EXIT.USAGE); // not a gRPC error: the arguments or an input file
    },
  );
}

module.exports = { grpc, numguard, client, metadata, backoff, sleep, fail, sleepBeforeRetry, streamCsv, run, RETRYABLE, EXIT };
