#!/usr/bin/env node
'use strict';
// Ask numguard before sending an OTP: CheckNumber for one number.
//
//   node check_number.js +819012345678
//   node check_number.js 090-1234-5678 --region JP --owner-since 2026-03-01 --json
//
// Prints the verdict (ALLOW, STEP_UP or BLOCK), its reasons and, per question, which
// sources cover it since when; exit code 0 when answered.

const { parseArgs } = require('node:util');
const { client, metadata, fail, run, EXIT } = require('./client');

// Long enough for a look-up the server makes to the operator's API, short enough for a
// login page.
const DEADLINE_MS = 5000;

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      region: { type: 'string', default: '' },
      'max-age-hours': { type: 'string', default: '0' },
      'owner-since': { type: 'string', default: '' },
      json: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) {
    console.error('usage: check_number.js PHONE_NUMBER [--region JP] [--owner-since YYYY-MM-DD] [--max-age-hours N] [--json]');
    return EXIT.USAGE;
  }
  const request = {
    phone_number: positionals[0],
    region: values.region,
    max_age_hours: Number(values['max-age-hours']),
    owner_since_date: values['owner-since'],
  };
  const checks = client('NumberCheck');
  let answer;
  try {
    answer = await new Promise((resolve, reject) =>
      checks.CheckNumber(request, metadata(), { deadline: Date.now() + DEADLINE_MS }, (error, response) =>
        error ? reject(error) : resolve(response),
      ),
    );
  } catch (error) {
    return fail(error);
  } finally {
    checks.close();
  }
  if (values.json) {
    console.log(JSON.stringify(answer));
    return EXIT.OK;
  }
  console.log(`${answer.phone_number} ${answer.verdict.replace(/^VERDICT_/, '')}`);
  for (const reason of answer.reasons) {
    console.log(`  ${reason.code.replace(/^REASON_CODE_/, '')}: ${reason.detail}`);
  }
  for (const coverage of answer.coverage) {
    const question = coverage.question.replace(/^COVERAGE_QUESTION_/, '').toLowerCase();
    if (coverage.covered_since) {
      // An answer names each source once; each question refers to them by position.
      const names = coverage.source_indexes.map((i) => answer.sources[i]).join(', ');
      const since = new Date(Number(coverage.covered_since.seconds) * 1000).toISOString();
      console.log(`  ${question} covered by ${names} since ${since}`);
    } else {
      console.log(`  ${question} not covered now: ${coverage.gap}`);
    }
  }
  return EXIT.OK;
}

run(main);
