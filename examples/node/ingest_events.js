#!/usr/bin/env node
'use strict';
// Feed events from a CSV file into numguard: one IngestEvents stream, one event per message.
//
//   node ingest_events.js events.csv --source docomo-feed
//
// The CSV has a header and the columns
//   source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier
// with kind one of SIM_SWAP, PORT, DISCONNECT, REASSIGN, DEVICE_SWAP and occurred_at in
// RFC 3339 (2026-05-02T10:00:00Z). Lines the server refuses are reported with their line
// numbers. If the connection fails, the whole file is sent again: numguard ignores an event
// it already has (same source and source_event_id), so nothing is stored twice.

const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { client, metadata, fail, sleepBeforeRetry, streamCsv, run, RETRYABLE, EXIT } = require('./client');

const MAX_ATTEMPTS = 5;
const KINDS = new Set(['SIM_SWAP', 'PORT', 'DISCONNECT', 'REASSIGN', 'DEVICE_SWAP']);

function timestamp(text) {
  const millis = Date.parse(text);
  if (Number.isNaN(millis) || !/^\d{4}-\d\d-\d\dT/.test(text)) throw new Error(`${JSON.stringify(text)} is not an RFC 3339 time`);
  // Keep the fraction's microseconds, which Date would round to milliseconds.
  const fraction = (text.match(/\.(\d+)/) || ['', ''])[1].padEnd(9, '0').slice(0, 9);
  return { seconds: String(Math.floor(millis / 1000)), nanos: Number(fraction) };
}

/** One attempt: the summary, or the call's gRPC error, or the file's error. */
async function ingestOnce(events, file, source, sentLines, localErrors) {
  let call;
  const summary = new Promise((resolve, reject) => {
    // No deadline: a large file takes as long as it takes.
    call = events.IngestEvents(metadata(), (error, response) => (error ? reject(error) : resolve(response)));
  });
  const ended = summary.then(() => {}, () => {});
  await streamCsv(call, ended, file, (record, line) => {
    const kind = (record.kind || '').trim().toUpperCase();
    let occurredAt;
    try {
      if (!KINDS.has(kind)) throw new Error(`${JSON.stringify(record.kind)} is not an event kind`);
      occurredAt = timestamp((record.occurred_at || '').trim());
    } catch (error) {
      localErrors.push([line, error.message]);
      return null;
    }
    sentLines.push(line);
    return {
      source,
      source_event_id: record.source_event_id,
      phone_number: record.phone_number,
      kind: `EVENT_KIND_${kind}`,
      occurred_at: occurredAt,
      from_carrier: record.from_carrier || '',
      to_carrier: record.to_carrier || '',
    };
  });
  return summary;
}

async function main() {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { source: { type: 'string' } } });
  if (positionals.length !== 1 || !values.source) {
    console.error('usage: ingest_events.js FILE --source NAME');
    return EXIT.USAGE;
  }
  if (!fs.existsSync(positionals[0])) {
    console.error(`error: ${positionals[0]}: no such file`);
    return EXIT.USAGE;
  }
  const events = client('Events');
  let summary;
  let sentLines;
  let localErrors;
  try {
    for (let attempt = 1; ; attempt++) {
      sentLines = [];
      localErrors = [];
      try {
        summary = await ingestOnce(events, positionals[0], values.source, sentLines, localErrors);
        break;
      } catch (error) {
        if (!(error.code >= 0)) throw error; // not a gRPC status: the file
        if (!RETRYABLE.has(error.code) || attempt === MAX_ATTEMPTS) return fail(error);
        await sleepBeforeRetry(attempt, error);
      }
    }
  } finally {
    events.close();
  }
  for (const [line, reason] of localErrors) console.error(`line ${line}: ${reason}`);
  for (const error of summary.errors) console.error(`line ${sentLines[Number(error.index)]}: ${error.reason}`);
  const rejected = Number(summary.rejected) + localErrors.length;
  console.log(`accepted ${summary.accepted}, duplicates ${summary.duplicates}, rejected ${rejected}`);
  return rejected === 0 ? EXIT.OK : EXIT.REFUSED;
}

run(main);
