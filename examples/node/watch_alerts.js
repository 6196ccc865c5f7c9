#!/usr/bin/env node
'use strict';
// Follow a tenant's alerts, one JSON line each, resuming where it left off.
//
//   node watch_alerts.js --cursor-file alerts.cursor
//
// Each alert's cursor is saved (in --cursor-file) once the alert has been printed. After a
// dropped connection, a server restart or a restart of this program, the stream resumes after
// the saved cursor: numguard replays exactly what was missed, then continues live, with no gap
// and no repeat. Needs a key with the `watch` scope.

const fs = require('node:fs');
const { parseArgs } = require('node:util');
const { grpc, client, metadata, backoff, sleep, fail, sleepBeforeRetry, run, RETRYABLE, EXIT } = require('./client');

// A connection that worked this long resets the back-off: it was not a crash loop.
const HEALTHY_MS = 30000;
// Give up after this long without a working connection (0: never).
const GIVE_UP_MS = Number(process.env.NUMGUARD_GIVE_UP_SECONDS || 0) * 1000;

// The saved cursor, or null before the first stream (which then starts from now).
function loadCursor(path) {
  try {
    return fs.readFileSync(path, 'utf8').trim();
  } catch (error) {
    if (error.code === 'ENOENT') return null;
    throw error;
  }
}

function saveCursor(path, cursor) {
  // Written aside and renamed, so a crash never leaves half a number.
  fs.writeFileSync(`${path}.tmp`, `${cursor}\n`);
  fs.renameSync(`${path}.tmp`, path);
}

function alertJson(alert) {
  return JSON.stringify({
    cursor: Number(alert.cursor),
    customer_refs: alert.customer_refs,
    phone_number: alert.phone_number,
    kind: alert.event.kind.replace(/^EVENT_KIND_/, ''),
    occurred_at: new Date(Number(alert.event.occurred_at.seconds) * 1000 + Math.floor(alert.event.occurred_at.nanos / 1e6)).toISOString(),
    verdict: alert.check.verdict.replace(/^VERDICT_/, ''),
  });
}

/** Follows one stream until it ends; resolves with null when the server ended it. */
function follow(alerts, cursorFile, onAlert) {
  return new Promise((resolve, reject) => {
    const cursor = loadCursor(cursorFile);
    const request = cursor === null
      ? { start: 'ALERTS_START_NOW' }
      : { resume_after: cursor, start: 'ALERTS_START_AFTER_CURSOR' };
    const call = alerts.WatchAlerts(request, metadata());
    if (cursor === null) {
      // Where "now" was: a reconnect before the first alert resumes there.
      call.on('metadata', (md) => {
        const start = md.get('numguard-start-cursor')[0];
        if (start !== undefined) saveCursor(cursorFile, start);
      });
    }
    call.on('data', (alert) => {
      if (onAlert(alert)) call.cancel();
    });
    call.on('error', (error) => (error.code === grpc.status.CANCELLED ? resolve('stopped') : reject(error)));
    call.on('end', () => resolve(null));
  });
}

async function main() {
  const { values } = parseArgs({ options: { 'cursor-file': { type: 'string' }, 'max-alerts': { type: 'string', default: '0' } } });
  if (!values['cursor-file']) {
    console.error('usage: watch_alerts.js --cursor-file FILE [--max-alerts N]');
    return EXIT.USAGE;
  }
  const cursorFile = values['cursor-file'];
  const maxAlerts = Number(values['max-alerts']);
  const alerts = client('Alerts');
  let seen = 0;
  let attempt = 0;
  let unavailableSince = null;
  const onAlert = (alert) => {
    console.log(alertJson(alert));
    saveCursor(cursorFile, alert.cursor);
    unavailableSince = null;
    seen++;
    return seen === maxAlerts;
  };
  try {
    for (;;) {
      const connectedAt = Date.now();
      try {
        if ((await follow(alerts, cursorFile, onAlert)) === 'stopped') return EXIT.OK;
        // The server ended the stream (it is shutting down): reconnect.
        attempt++;
        await sleep(backoff(attempt));
      } catch (error) {
        if (!RETRYABLE.has(error.code)) return fail(error);
        if (Date.now() - connectedAt > HEALTHY_MS) attempt = 0;
        unavailableSince = unavailableSince ?? Date.now();
        if (GIVE_UP_MS && Date.now() - unavailableSince > GIVE_UP_MS) return fail(error);
        attempt++;
        await sleepBeforeRetry(attempt, error);
      }
    }
  } finally {
    alerts.close();
  }
}

run(main);
