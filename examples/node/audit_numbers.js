#!/usr/bin/env node
'use strict';
// Audit a customer list: every row through AuditNumbers, a CSV report in input order.
//
//   node audit_numbers.js customers.csv --out report.csv
//
// The input has a header with customer_ref and phone_number, and optionally region and
// owner_since (YYYY-MM-DD). The report has one line per input row: customer_ref,
// phone_number (E.164), verdict, sim_swap, ownership, reasons, error. A row the server cannot
// read gets its error in the report and the audit goes on. If the connection fails, the audit
// resumes after the last row answered, so the report has each row exactly once.

const fs = require('node:fs');
const { once } = require('node:events');
const { parseArgs } = require('node:util');
const { client, metadata, fail, sleepBeforeRetry, streamCsv, run, RETRYABLE, EXIT } = require('./client');

const MAX_ATTEMPTS = 5;
const HEADER = ['customer_ref', 'phone_number', 'verdict', 'sim_swap', 'ownership', 'reasons', 'error'];

function csvField(value) {
  return /[",\n\r]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

function reportLine(result) {
  if (result.outcome === 'error') return [result.customer_ref, '', '', '', '', '', result.error.message];
  const check = result.check;
  return [
    result.customer_ref,
    check.phone_number,
    check.verdict.replace(/^VERDICT_/, ''),
    check.sim_swap.replace(/^SIM_SWAP_STATUS_/, ''),
    check.ownership.replace(/^OWNERSHIP_STATUS_/, ''),
    check.reasons.map((r) => r.code.replace(/^REASON_CODE_/, '')).join(';'),
    '',
  ];
}

/**
 * One attempt from row `first`: writes each answer to `out` as it arrives, in order, and
 * returns how many rows are answered in all; throws the call's gRPC error or the file's.
 */
async function auditFrom(checks, file, first, out, verdicts) {
  const call = checks.AuditNumbers(metadata());
  let answered = first;
  const ended = new Promise((resolve, reject) => {
    call.on('data', (result) => {
      if (Number(result.index) !== answered - first) {
        call.cancel();
        reject(new Error(`result ${result.index} out of order`));
        return;
      }
      const line = reportLine(result);
      out.write(line.map(csvField).join(',') + '\n');
      verdicts.set(line[2] || 'ERROR', (verdicts.get(line[2] || 'ERROR') || 0) + 1);
      answered++;
    });
    call.on('error', (error) => { error.answered = answered; reject(error); });
    call.on('end', () => resolve(answered));
  });
  let seen = 0;
  await streamCsv(call, ended.then(() => {}, () => {}), file, (row) => {
    if (seen++ < first) return null; // answered before the connection failed
    if (!('customer_ref' in row) || !('phone_number' in row)) throw new Error(`${file}: the header lacks customer_ref or phone_number`);
    return {
      customer_ref: row.customer_ref,
      phone_number: row.phone_number,
      region: row.region || '',
      owner_since_date: row.owner_since || '',
    };
  });
  return ended;
}

async function main() {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { out: { type: 'string' } } });
  if (positionals.length !== 1 || !values.out) {
    console.error('usage: audit_numbers.js FILE --out REPORT.csv');
    return EXIT.USAGE;
  }
  if (!fs.existsSync(positionals[0])) {
    console.error(`error: ${positionals[0]}: no such file`);
    return EXIT.USAGE;
  }
  const out = fs.createWriteStream(values.out);
  out.write(HEADER.join(',') + '\n');
  const checks = client('NumberCheck');
  const verdicts = new Map();
  let answered = 0;
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        answered = await auditFrom(checks, positionals[0], answered, out, verdicts);
        break;
      } catch (error) {
        if (!(error.code >= 0)) throw error; // not a gRPC status: the file
        answered = error.answered;
        if (!RETRYABLE.has(error.code) || attempt === MAX_ATTEMPTS) return fail(error);
        await sleepBeforeRetry(attempt, error);
      }
    }
  } finally {
    checks.close();
    out.end();
    await once(out, 'close');
  }
  const summary = [...verdicts].sort().map(([v, n]) => `${n} ${v}`).join(', ');
  console.log(`audited ${answered} rows: ${summary}`);
  return EXIT.OK;
}

run(main);
